//! `{{name}}`: a router. It picks the channels an alert goes to: every
//! channel for critical and high alerts, only `websocket` otherwise
//! (configurable: `quiet` lists the channels for medium and low).
//!
//! ```toml
//! [route]
//! plugin = "{{name}}"
//! config = { quiet = ["websocket"] }
//! ```

use tocsin_plugin_sdk::router::{Alert, Router, Severity};
use tocsin_plugin_sdk::Table;

/// One rule's settings: the channels for medium and low alerts.
struct Quiet(Vec<String>);

impl Router for Quiet {
    const NAME: &'static str = "{{name}}";

    fn configure(config: &mut Table) -> Result<Self, String> {
        let quiet = config.strings("quiet")?.unwrap_or_else(|| vec!["websocket".into()]);
        Ok(Quiet(quiet))
    }

    fn route(&self, alert: &Alert, channels: Vec<String>) -> Result<Vec<String>, String> {
        Ok(match alert.severity {
            Severity::Critical | Severity::High => channels,
            Severity::Medium | Severity::Low => {
                channels.into_iter().filter(|c| self.0.contains(c)).collect()
            }
        })
    }
}

tocsin_plugin_sdk::export_router!(Quiet);

// Native unit tests: `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::testing;

    #[test]
    fn loud_alerts_go_everywhere_quiet_ones_to_the_quiet_list() {
        let r = Quiet::from_json("{}").unwrap();
        let channels = vec!["websocket".to_string(), "email".to_string()];
        let mut alert: Alert = testing::alert("E1", "svc").into();
        assert_eq!(r.route(&alert, channels.clone()).unwrap(), channels);
        alert.severity = Severity::Low;
        assert_eq!(r.route(&alert, channels).unwrap(), ["websocket"]);
        assert!(Quiet::from_json(r#"{"quiet": "email"}"#).is_ok());
        assert!(Quiet::from_json(r#"{"quiet": [1]}"#).is_err());
    }
}
