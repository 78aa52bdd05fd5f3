//! The host's capabilities as plain functions: the same calls in a
//! component (they go to the host's imports) and in a native `cargo test`
//! (they go to the in-memory fakes of [`crate::testing`]).

#[cfg(target_arch = "wasm32")]
mod wasm {
    #[cfg(feature = "aggregator")]
    pub use crate::aggregator::bindings::tocsin::plugin as world;
    #[cfg(feature = "channel")]
    pub use crate::channel::bindings::tocsin::plugin as world;
    #[cfg(feature = "router")]
    pub use crate::router::bindings::tocsin::plugin as world;
}

/// The host's log, with the plugin and rule attached by the host. Lines
/// are capped by the host; prefer one line per decision over one per event.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    use super::wasm;
    use crate::types::Level;

    /// Writes `message` at `level`.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            use wasm::world::log as wit;
            let level = match level {
                Level::Trace => wit::Level::Trace,
                Level::Debug => wit::Level::Debug,
                Level::Info => wit::Level::Info,
                Level::Warn => wit::Level::Warn,
                Level::Error => wit::Level::Error,
            };
            wit::log(level, message)
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::record_log(level, message)
    }

    /// Writes `message` at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }

    /// Writes `message` at info level.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }

    /// Writes `message` at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
}

/// Host-held state for aggregators (see `wit/state.wit`): scoped to the
/// rule by the host, atomic, durable, shared between instances on Redis.
/// Only the `aggregator` world imports it.
#[cfg(any(feature = "aggregator", not(target_arch = "wasm32")))]
pub mod state {
    #[cfg(target_arch = "wasm32")]
    use super::wasm::world::state as wit;
    use crate::types::WindowHit;

    /// Adds `delta` to the windowed counter `key` and checks it against
    /// `threshold` (see `window-add` in `wit/state.wit`).
    pub fn window_add(
        key: &str,
        delta: u32,
        now: i64,
        window_ms: u64,
        threshold: u64,
    ) -> WindowHit {
        #[cfg(target_arch = "wasm32")]
        {
            let h = wit::window_add(key, delta, now, window_ms, threshold);
            WindowHit {
                before: h.before,
                fires: h.fires,
                after: h.after,
                window_start: h.window_start,
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.window_add(key, delta, now, window_ms, threshold).into())
    }

    /// The value under `key`, if any and not expired.
    pub fn get(key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return wit::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.get(key))
    }

    /// Stores `value` under `key`, expiring after `ttl_ms` when given.
    pub fn set(key: &str, value: &str, ttl_ms: Option<u64>) {
        #[cfg(target_arch = "wasm32")]
        wit::set(key, value, ttl_ms);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| {
            m.set(key, value.to_string(), ttl_ms, false);
        })
    }

    /// Stores `value` only if `key` holds nothing live; true when it did.
    pub fn set_if_absent(key: &str, value: &str, ttl_ms: Option<u64>) -> bool {
        #[cfg(target_arch = "wasm32")]
        return wit::set_if_absent(key, value, ttl_ms);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.set(key, value.to_string(), ttl_ms, true))
    }

    /// Removes `key` (value or list).
    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        wit::delete(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.delete(key))
    }

    /// Appends `value` to the list `key` unless it holds `max_len` items;
    /// the list's length afterwards.
    pub fn list_push(key: &str, value: &str, max_len: u32, ttl_ms: Option<u64>) -> u32 {
        #[cfg(target_arch = "wasm32")]
        return wit::list_push(key, value, max_len, ttl_ms);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.list_push(key, value.to_string(), max_len, ttl_ms))
    }

    /// Removes and returns the whole list `key`.
    pub fn list_take(key: &str) -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return wit::list_take(key);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::with_state(|m| m.list_take(key))
    }
}

/// Channels only: one frame to every `/v1/ws` client (needs no grant).
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
pub mod websocket {
    /// Broadcasts `body` once the call has returned.
    pub fn broadcast(body: &str) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        return super::wasm::world::websocket::broadcast(body);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::record(crate::testing::Delivery::WebSocket(body.to_string()))
    }
}

/// Channels only: email through the host's SMTP relay (grant `email`).
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
pub mod email {
    use crate::types::EmailMessage;

    /// Queues `message` in the host's outbox.
    pub fn send(message: &EmailMessage) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        {
            use super::wasm::world::email as wit;
            wit::send(&wit::Message {
                to: message.to.clone(),
                subject: message.subject.clone(),
                text: message.text.clone(),
                html: message.html.clone(),
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::record(crate::testing::Delivery::Email(message.clone()))
    }
}

/// Channels only: an HTTP request to a host in the rule's `grants.http`.
#[cfg(any(feature = "channel", not(target_arch = "wasm32")))]
pub mod http {
    use crate::types::HttpRequest;

    /// Queues `request` in the host's outbox (sent with retries after the
    /// call returned; a URL outside the grants is refused here).
    pub fn send(request: &HttpRequest) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        {
            use super::wasm::world::http as wit;
            wit::send(&wit::Request {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::record(crate::testing::Delivery::Http(request.clone()))
    }
}
