//! `flood`: a channel that, for an alert whose summary names a flood,
//! queues thousands of deliveries (or one huge one) in one `deliver` call,
//! ignoring every refusal: the host's quotas must fail the call and send
//! none of it. Any other alert gets one WebSocket frame.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "channel",
});

use tocsin::plugin::{email, http, websocket};

/// The component's exports.
struct Flood;

impl Guest for Flood {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn deliver(_binding: String, alert: Alert) -> Result<(), String> {
        match alert.summary.as_str() {
            "ws-flood" => {
                for i in 0..5000 {
                    let _ = websocket::broadcast(&format!("{{\"flood\":{i}}}"));
                }
            }
            "http-flood" => {
                for _ in 0..5000 {
                    let _ = http::send(&http::Request {
                        method: "POST".into(),
                        url: "http://127.0.0.1:9/flood".into(),
                        headers: vec![],
                        body: b"{}".to_vec(),
                    });
                }
            }
            "email-flood" => {
                for _ in 0..5000 {
                    let _ = email::send(&email::Message {
                        to: vec![],
                        subject: "flood".into(),
                        text: "flood".into(),
                        html: None,
                    });
                }
            }
            "big-frame" => {
                let _ = websocket::broadcast(&"f".repeat(10 << 20));
            }
            _ => {
                let body = format!("{{\"rule\":{:?},\"key\":{:?}}}", alert.rule, alert.key);
                websocket::broadcast(&body)?;
            }
        }
        Ok(())
    }
}

export!(Flood);
