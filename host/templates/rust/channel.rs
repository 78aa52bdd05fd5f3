//! `{{name}}`: a channel. It renders an alert as one JSON frame on the live
//! WebSocket stream (`/v1/ws`), its title prefixed. Channels do no I/O
//! themselves: they hand deliveries to host capabilities (`websocket`,
//! `email`, `http`), each of which the rule must grant.
//!
//! ```toml
//! [[channels]]
//! plugin = "{{name}}"
//! grants = { websocket = true }
//! config = { prefix = "[{{name}}]" }
//! ```

use tocsin_plugin_sdk::channel::{Alert, Channel};
use tocsin_plugin_sdk::{websocket, Table};

/// One rule's settings.
struct Line {
    prefix: String,
}

impl Channel for Line {
    const NAME: &'static str = "{{name}}";

    fn configure(config: &mut Table) -> Result<Self, String> {
        let prefix = config.string("prefix")?.unwrap_or_else(|| "[{{name}}]".into());
        Ok(Line { prefix })
    }

    fn deliver(&self, alert: Alert) -> Result<(), String> {
        websocket::broadcast(&render(&alert, &self.prefix))
    }
}

/// The frame for `alert`.
fn render(alert: &Alert, prefix: &str) -> String {
    tocsin_plugin_sdk::serde_json::json!({
        "type": "alert",
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "title": format!("{prefix} {}", alert.title),
        "summary": alert.summary,
    })
    .to_string()
}

tocsin_plugin_sdk::export_channel!(Line);

// Native unit tests: `cargo test` (deliveries are recorded by `testing`).
#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_plugin_sdk::testing::{self, Delivery};

    #[test]
    fn the_frame_carries_the_prefixed_title() {
        testing::reset();
        let c = Line::from_json(r#"{"prefix": ">>"}"#).unwrap();
        c.deliver(testing::alert("E1", "svc")).unwrap();
        let [Delivery::WebSocket(frame)] = &testing::deliveries()[..] else {
            panic!("one frame: {:?}", testing::deliveries());
        };
        let frame: tocsin_plugin_sdk::serde_json::Value =
            tocsin_plugin_sdk::serde_json::from_str(frame).unwrap();
        assert_eq!(frame["title"], ">> E1 x3 on svc");
        assert_eq!(frame["key"], "E1|svc");
    }
}
