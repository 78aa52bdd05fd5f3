//! The delivery stage: what channel plugins queued, carried out by the host.
//!
//! Channel plugins never do I/O; they hand [`Delivery`] values to host
//! capabilities. WebSocket frames go straight to the live hub (a live
//! stream has nothing to retry). Email and webhook deliveries are written to
//! the durable [`outbox`] first, then attempted by the [`dispatch`]er with
//! per-delivery [`retry`] and per-target [`breaker`]s, through the
//! [`email`] and [`webhook`] transports.

pub mod breaker;
pub mod dispatch;
pub mod email;
pub mod outbox;
pub mod retry;
pub mod shared;
pub mod webhook;
pub mod websocket;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{now_ms, Severity};
pub use dispatch::Dispatcher;
pub use outbox::{DeliveryRow, NotificationQuery, NotificationRow, Outbox, OutboxError, Status};
pub use retry::RetryPolicy;
pub use websocket::{WsFrame, WsHub};

/// An email a channel plugin asked the host to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// An HTTP request a channel plugin asked the host to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One piece of I/O queued by a channel plugin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What a delivery is about, for WebSocket filters, the outbox and logs.
#[derive(Clone, Debug)]
pub struct AlertContext {
    pub notification_id: Arc<str>,
    pub rule: Arc<str>,
    pub channel: Arc<str>,
    pub severity: Severity,
    pub service: String,
    pub retry: RetryPolicy,
}

/// Notifications and deliveries produced by one pipeline batch, committed
/// to the outbox together.
#[derive(Default, Serialize, Deserialize)]
pub struct Outgoing {
    pub notifications: Vec<NotificationRow>,
    pub deliveries: Vec<DeliveryRow>,
    /// Live WebSocket frames, published once the batch is committed (a
    /// batch that is redone must not have shown its alerts).
    #[serde(skip)]
    pub frames: Vec<WsFrame>,
}

impl Outgoing {
    /// True when the batch produced nothing to record.
    pub fn is_empty(&self) -> bool {
        self.notifications.is_empty() && self.deliveries.is_empty()
    }

    /// Takes one delivery queued by a channel plugin: WebSocket frames to
    /// publish once the batch commits, the rest for the outbox.
    pub fn take(&mut self, ctx: &AlertContext, delivery: Delivery) {
        let kind = delivery.kind();
        metrics::counter!("tocsin_notifications_total", "rule" => ctx.rule.to_string(), "channel" => ctx.channel.to_string(), "kind" => kind).increment(1);
        let target = match &delivery {
            Delivery::WebSocket { body } => {
                self.frames.push(WsFrame {
                    rule: ctx.rule.clone(),
                    severity: ctx.severity,
                    service: ctx.service.clone(),
                    body: Arc::from(body.as_str()),
                });
                return;
            }
            Delivery::Http(req) => webhook::target(&req.url),
            Delivery::Email(_) => "smtp".to_string(),
        };
        let now = now_ms();
        self.deliveries.push(DeliveryRow {
            id: uuid::Uuid::now_v7().to_string(),
            notification_id: ctx.notification_id.to_string(),
            rule: ctx.rule.to_string(),
            channel: ctx.channel.to_string(),
            kind: kind.to_string(),
            target,
            status: Status::Pending,
            attempts: 0,
            policy: ctx.retry,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            delivered_at: None,
            payload: delivery,
        });
    }
}

/// The delivery stage's entry point. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    hub: WsHub,
    outbox: Outbox,
    dispatcher: Dispatcher,
}

impl Deliverer {
    /// A deliverer over the live hub, the outbox and its dispatcher.
    pub fn new(hub: WsHub, outbox: Outbox, dispatcher: Dispatcher) -> Self {
        Self {
            hub,
            outbox,
            dispatcher,
        }
    }

    /// The live WebSocket hub.
    pub fn hub(&self) -> &WsHub {
        &self.hub
    }

    /// The outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Re-records a batch a previous run made durable as an intent but may
    /// not have committed (ids make this idempotent). The dispatcher picks
    /// up whatever is pending when it resumes.
    pub async fn replay(&self, out: Outgoing) -> Result<(), OutboxError> {
        self.outbox.enqueue(out.notifications, out.deliveries).await
    }

    /// The delivery stage, entered once per committed batch: publishes its
    /// live frames, durably records its notifications and deliveries in
    /// the outbox, and hands the deliveries to the dispatcher. Called
    /// after the batch's commit point (see [`crate::pipeline::commit`]),
    /// so a batch that is redone never showed its alerts.
    pub async fn deliver(&self, mut out: Outgoing) -> Result<(), OutboxError> {
        for frame in std::mem::take(&mut out.frames) {
            self.hub.publish(frame);
        }
        self.commit(out).await
    }

    /// Durably records notifications and deliveries (adopted or taken
    /// over from the shared outbox), then hands the deliveries to the
    /// dispatcher.
    pub async fn commit(&self, out: Outgoing) -> Result<(), OutboxError> {
        if out.is_empty() {
            return Ok(());
        }
        let deliveries = out.deliveries.clone();
        self.outbox
            .enqueue(out.notifications, out.deliveries)
            .await?;
        self.dispatcher.submit(deliveries);
        Ok(())
    }
}
