//! `{{name}}`: a channel. It pushes each alert to the live stream
//! (`GET /v1/ws`) as one line, `PREFIX title: summary`.
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
    format!("{prefix} {}: {}", alert.title, alert.summary)
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
        assert_eq!(
            testing::deliveries(),
            [Delivery::WebSocket(
                ">> E1 x3 on svc: E1 occurred 3 times on svc".into()
            )]
        );
    }
}
