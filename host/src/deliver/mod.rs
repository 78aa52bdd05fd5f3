//! The delivery stage: what channel plugins queued, carried out by the host.
//!
//! Channel plugins never do I/O; they hand [`Delivery`] values to host
//! capabilities. This stage performs them: WebSocket frames go to the live
//! hub, webhooks are POSTed with a timeout. The durable outbox, retries and
//! circuit breakers arrive with the delivery issue and slot in here.

pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use crate::event::Severity;
pub use websocket::{WsFrame, WsHub};

/// An email a channel plugin asked the host to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// An HTTP request a channel plugin asked the host to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One piece of I/O queued by a channel plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    WebSocket { body: String },
    Email(EmailMessage),
    Http(HttpRequest),
}

impl Delivery {
    /// Short kind for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::WebSocket { .. } => "websocket",
            Delivery::Email(_) => "email",
            Delivery::Http(_) => "http",
        }
    }
}

/// What a delivery is about, for WebSocket filters and logs.
#[derive(Clone, Debug)]
pub struct AlertContext {
    pub rule: Arc<str>,
    pub channel: Arc<str>,
    pub severity: Severity,
    pub service: String,
}

/// Carries out deliveries.
#[derive(Clone)]
pub struct Deliverer {
    hub: WsHub,
    http: reqwest::Client,
}

impl Deliverer {
    /// A deliverer pushing WebSocket frames to `hub`.
    pub fn new(hub: WsHub) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self { hub, http }
    }

    /// The live WebSocket hub.
    pub fn hub(&self) -> &WsHub {
        &self.hub
    }

    /// Performs `delivery` for the alert described by `ctx`.
    pub fn dispatch(&self, ctx: &AlertContext, delivery: Delivery) {
        let kind = delivery.kind();
        metrics::counter!("tocsin_notifications_total", "rule" => ctx.rule.to_string(), "channel" => ctx.channel.to_string(), "kind" => kind).increment(1);
        match delivery {
            Delivery::WebSocket { body } => {
                self.hub.publish(WsFrame {
                    rule: ctx.rule.clone(),
                    severity: ctx.severity,
                    service: ctx.service.clone(),
                    body: Arc::from(body),
                });
            }
            Delivery::Http(req) => {
                let client = self.http.clone();
                let rule = ctx.rule.clone();
                tokio::spawn(async move {
                    let method = reqwest::Method::from_bytes(req.method.as_bytes())
                        .unwrap_or(reqwest::Method::POST);
                    let mut builder = client.request(method, &req.url).body(req.body);
                    for (k, v) in &req.headers {
                        builder = builder.header(k, v);
                    }
                    match builder.send().await {
                        Ok(resp) if resp.status().is_success() => {
                            tracing::debug!(rule = %rule, url = %req.url, status = %resp.status(), "webhook delivered");
                        }
                        Ok(resp) => {
                            tracing::warn!(rule = %rule, url = %req.url, status = %resp.status(), "webhook refused");
                        }
                        Err(e) => {
                            tracing::warn!(rule = %rule, url = %req.url, error = %e, "webhook failed")
                        }
                    }
                });
            }
            Delivery::Email(msg) => {
                // Real SMTP delivery arrives with the delivery outbox.
                tracing::info!(rule = %ctx.rule, to = ?msg.to, subject = %msg.subject, "email queued (SMTP transport not configured in this build)");
            }
        }
    }
}
