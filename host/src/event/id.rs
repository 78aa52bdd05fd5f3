//! Event ids: every scheme a source uses, in one place. An id is what the
//! pipeline recognises a redelivery by ([`super::Event::dedup`], and
//! [`crate::pipeline::dedup`] for what is done with it), so a source whose
//! producer gives none derives one from what makes the event the same
//! event.

/// A new, time-ordered id (UUID v7): an event nobody will send again.
pub fn fresh() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stable id (UUID v8) made of `parts` (a namespace first): the same
/// parts, the same id, e.g. an Alertmanager alert's fingerprint and
/// start.
pub fn derived(parts: &[&str]) -> String {
    let hash = blake3::hash(parts.join("\0").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The id of a message known only by its bytes (an AMQP message
/// without a message id): the same body, the same id.
pub fn of_bytes(body: &[u8]) -> String {
    format!("sha-{}", &blake3::hash(body).to_hex()[..32])
}
