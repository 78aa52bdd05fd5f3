//! Email transport: SMTP through lettre, with a pooled connection,
//! STARTTLS or implicit TLS, and AUTH from configuration.
//!
//! TLS (rustls) checks the server's certificate against `[smtp] host`,
//! trusting the public webpki roots plus the certificates of
//! `[smtp] ca_file` (a private CA, a self-signed server). A failed check
//! fails the attempt: with `starttls` nothing is ever sent in clear, and
//! nothing turns the check off.
//!
//! The plugin renders subject and bodies; the host adds `From`, the
//! recipients it checked against the rule's grants, and a `Message-ID`
//! derived from the delivery id so a retried send is recognisable.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::retry::Attempt;
use super::EmailMessage;
use crate::config::{SmtpConfig, TrustedRoots};

/// rustls parameters for `[smtp] host`: the webpki roots, plus the
/// certificates of `[smtp] ca_file` if set.
fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, String> {
    let mut params = TlsParameters::builder(cfg.host.clone());
    if let Some(roots) = TrustedRoots::load("[smtp] ca_file", &cfg.ca_file)? {
        for der in roots.certs {
            let cert = Certificate::from_der(der.to_vec()).map_err(|e| {
                format!(
                    "[smtp] ca_file = {:?}: {e}",
                    roots.path.display().to_string()
                )
            })?;
            params = params.add_root_certificate(cert);
        }
    }
    params
        .build_rustls()
        .map_err(|e| format!("[smtp] {} TLS to {}: {e}", cfg.tls, cfg.host))
}

/// A configured SMTP sender.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpSender {
    /// Builds the transport from `[smtp]`; `Ok(None)` when no host is set.
    pub fn new(cfg: &SmtpConfig) -> Result<Option<Self>, String> {
        if cfg.host.trim().is_empty() {
            return Ok(None);
        }
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host);
        let builder = match cfg.tls.as_str() {
            "none" | "" => {
                if !cfg.ca_file.trim().is_empty() {
                    tracing::warn!(ca_file = %cfg.ca_file, "[smtp] ca_file is unused with tls = none");
                }
                builder
            }
            "starttls" => builder.tls(Tls::Required(tls_parameters(cfg)?)),
            "implicit" => builder.tls(Tls::Wrapper(tls_parameters(cfg)?)),
            other => {
                return Err(format!(
                    "[smtp] tls = {other:?}: use none, starttls or implicit"
                ))
            }
        };
        let mut builder = builder
            .port(cfg.port)
            .timeout(Some(Duration::from_secs(10)));
        if !cfg.username.is_empty() {
            builder =
                builder.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
        }
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("[smtp] from = {:?}: {e}", cfg.from))?;
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    /// One attempt of `msg`.
    pub async fn send(&self, delivery_id: &str, msg: &EmailMessage) -> Attempt {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.clone())
            .message_id(Some(format!("<{delivery_id}@tocsin>")));
        for to in &msg.to {
            match to.parse::<Mailbox>() {
                Ok(m) => builder = builder.to(m),
                Err(e) => return Attempt::Permanent(format!("bad recipient {to:?}: {e}")),
            }
        }
        let built = match &msg.html {
            Some(html) => builder.multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(msg.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html.clone()),
                    ),
            ),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(msg.text.clone()),
        };
        let message = match built {
            Ok(m) => m,
            Err(e) => return Attempt::Permanent(format!("cannot build the message: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Attempt::Delivered,
            Err(e) if e.is_permanent() => Attempt::Permanent(format!("SMTP: {e}")),
            Err(e) => Attempt::Transient(format!("SMTP: {e}")),
        }
    }
}
