//! Email transport: SMTP through lettre, with a pooled connection,
//! STARTTLS or implicit TLS, and AUTH from configuration.
//!
//! The plugin renders subject and bodies; the host adds `From`, the
//! recipients it checked against the rule's grants, and a `Message-ID`
//! derived from the delivery id so a retried send is recognisable.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::retry::Attempt;
use super::EmailMessage;
use crate::config::SmtpConfig;

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
        let builder = match cfg.tls.as_str() {
            "none" | "" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| format!("[smtp] starttls to {}: {e}", cfg.host))?,
            "implicit" => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| format!("[smtp] implicit TLS to {}: {e}", cfg.host))?,
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
