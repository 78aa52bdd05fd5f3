//! `tocsin:plugin/email`: queue an email, only to recipients the rule grants.

use crate::deliver::{Delivery, EmailMessage};
use crate::plugin::bindings::channel::tocsin::plugin::email::{Host, Message};
use crate::plugin::HostCtx;

/// Largest email (recipients, subject, text and HTML) a plugin may queue.
const MAX_MESSAGE: usize = 1024 * 1024;

/// True when `address` matches a grant: exact (case-insensitive) or `*@domain`.
pub fn recipient_granted(grants: &[String], address: &str) -> bool {
    let address = address.trim().to_ascii_lowercase();
    grants.iter().any(|g| {
        let g = g.trim().to_ascii_lowercase();
        match g.strip_prefix("*@") {
            Some(domain) => address.rsplit_once('@').is_some_and(|(_, d)| d == domain),
            None => g == address,
        }
    })
}

impl Host for HostCtx {
    fn send(&mut self, message: Message) -> Result<(), String> {
        if !self.host.email_enabled {
            return Err("email is not configured: set `[smtp] host` (TOCSIN_SMTP_HOST)".into());
        }
        let grants = &self.scope.grants.email;
        let to = if message.to.is_empty() {
            if !grants.iter().any(|g| g == "default") {
                return Err(format!(
                    "email refused: no recipients given and rule `{}` does not grant `default` recipients",
                    self.scope.rule
                ));
            }
            if self.host.default_email_to.is_empty() {
                return Err("email refused: no recipients given and no default recipients configured (set `[smtp] to` or TOCSIN_SMTP_TO)".into());
            }
            self.host.default_email_to.clone()
        } else {
            let default_granted = grants.iter().any(|g| g == "default");
            for address in &message.to {
                let is_default = default_granted
                    && self
                        .host
                        .default_email_to
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(address));
                if !is_default && !recipient_granted(grants, address) {
                    return Err(format!(
                        "email to {address:?} refused: not granted by rule `{}` (grants.email = {grants:?})",
                        self.scope.rule
                    ));
                }
            }
            message.to
        };
        let bytes = message.subject.len()
            + message.text.len()
            + message.html.as_ref().map_or(0, String::len)
            + to.iter().map(String::len).sum::<usize>();
        let delivery = Delivery::Email(EmailMessage {
            to,
            subject: message.subject,
            text: message.text,
            html: message.html,
        });
        self.queue_delivery("email", bytes, MAX_MESSAGE, delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::recipient_granted;

    #[test]
    fn grants_match_exact_and_domain() {
        let g = vec!["ops@example.com".to_string(), "*@corp.io".to_string()];
        assert!(recipient_granted(&g, "OPS@example.com"));
        assert!(recipient_granted(&g, "a@corp.io"));
        assert!(!recipient_granted(&g, "a@evil.io"));
        assert!(!recipient_granted(&g, "a@corp.io.evil"));
    }
}
