//! The live WebSocket hub behind `GET /v1/ws`.
//!
//! A bounded broadcast ring: publishing never waits for clients, and a
//! client that stops reading falls behind, loses the oldest frames (counted
//! in `tocsin_ws_dropped_total`) and never slows anyone else down.
//!
//! With `[redis]` set the stream is cluster-wide: every frame is also
//! published on the Redis channel `<prefix>ws`, and frames other instances
//! published there are relayed to this instance's clients, so a client
//! sees every instance's notifications whichever instance it reached.
//! Frames for the relay go through one ordered queue (at most
//! [`RELAY_BACKLOG`] frames): while Redis is slow or unreachable they wait
//! there and are published when it answers, so an outage delays other
//! instances' clients instead of losing them their frames. Past the
//! backlog the oldest are dropped (`tocsin_ws_relay_dropped_total`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::event::Severity;

/// Frames kept for slow clients before they start losing the oldest.
const RING: usize = 4096;
/// Frames waiting for the relay while Redis does not take them.
pub const RELAY_BACKLOG: usize = 100_000;
/// Frames published in one pipeline.
const RELAY_BATCH: usize = 256;

/// One notification on the live stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WsFrame {
    pub rule: Arc<str>,
    pub severity: Severity,
    pub service: String,
    /// The JSON text rendered by the channel plugin.
    pub body: Arc<str>,
}

/// A frame on the cluster channel, tagged with the instance that sent it
/// and its place in that instance's stream: a pipeline retried after an
/// unanswered PUBLISH may deliver frames twice, and subscribers drop a
/// frame whose `seq` they have already passed (one publisher per instance
/// sends in order).
#[derive(Serialize, Deserialize)]
struct ClusterFrame {
    instance: String,
    #[serde(default)]
    seq: u64,
    frame: WsFrame,
}

struct Relay {
    queue: tokio::sync::mpsc::Sender<String>,
    instance: String,
    seq: std::sync::atomic::AtomicU64,
}

/// Fan-out point for WebSocket clients. Cheap to clone.
#[derive(Clone)]
pub struct WsHub {
    tx: broadcast::Sender<WsFrame>,
    relay: Option<Arc<Relay>>,
}

impl Default for WsHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WsHub {
    /// A hub with the default ring size, local to this instance.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(RING);
        Self { tx, relay: None }
    }

    /// A cluster-wide hub over Redis pub/sub (see the module documentation).
    pub async fn clustered(
        url: &str,
        prefix: &str,
        patience: crate::state::Patience,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("[redis] url: {e}"))?;
        let conn = crate::state::conn::Conn::open(url, patience, "the WebSocket relay").await?;
        let channel = format!("{prefix}ws");
        let (queue, rx) = tokio::sync::mpsc::channel(RELAY_BACKLOG);
        let mut hub = Self::new();
        let relay = Arc::new(Relay {
            queue,
            instance: uuid::Uuid::now_v7().to_string(),
            seq: std::sync::atomic::AtomicU64::new(0),
        });
        hub.relay = Some(relay.clone());
        tokio::spawn(publish_loop(conn, channel.clone(), rx));
        let tx = hub.tx.clone();
        tokio::spawn(async move {
            // The highest `seq` seen per sending instance (see
            // [`ClusterFrame`]), kept across resubscriptions.
            let mut passed: std::collections::HashMap<String, u64> = Default::default();
            loop {
                if let Err(e) =
                    subscribe(&client, &channel, &relay.instance, &tx, &mut passed).await
                {
                    tracing::warn!(error = %e, "WebSocket relay lost its Redis subscription; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(hub)
    }

    /// Sends `frame` to every connected client (of every instance, when
    /// clustered).
    pub fn publish(&self, frame: WsFrame) {
        if let Some(relay) = &self.relay {
            let message = ClusterFrame {
                instance: relay.instance.clone(),
                seq: relay.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                frame: frame.clone(),
            };
            if let Ok(text) = serde_json::to_string(&message) {
                if relay.queue.try_send(text).is_err() {
                    metrics::counter!("tocsin_ws_relay_dropped_total").increment(1);
                }
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(frame);
    }

    /// A new client's receiver.
    pub fn subscribe(&self) -> broadcast::Receiver<WsFrame> {
        self.tx.subscribe()
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Publishes queued frames in order, a pipeline at a time; a pipeline
/// Redis did not take is retried until it does (a frame whose PUBLISH
/// outcome is unknown may be seen twice, never lost).
async fn publish_loop(
    mut conn: crate::state::conn::Conn,
    channel: String,
    mut rx: tokio::sync::mpsc::Receiver<String>,
) {
    let mut texts = Vec::with_capacity(RELAY_BATCH);
    while rx.recv_many(&mut texts, RELAY_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for text in &texts {
            pipe.cmd("PUBLISH").arg(&channel).arg(text).ignore();
        }
        let mut pause = Duration::from_millis(100);
        while let Err(e) = pipe.query_async::<()>(&mut conn).await {
            metrics::counter!("tocsin_ws_relay_errors_total").increment(1);
            tracing::debug!(error = %e, frames = texts.len(), "WebSocket relay publish failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        texts.clear();
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    instance: &str,
    tx: &broadcast::Sender<WsFrame>,
    passed: &mut std::collections::HashMap<String, u64>,
) -> Result<(), String> {
    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Ok(text) = msg.get_payload::<String>() else {
            continue;
        };
        match serde_json::from_str::<ClusterFrame>(&text) {
            Ok(m) if m.instance != instance => {
                let last = passed.entry(m.instance).or_default();
                if m.seq != 0 && m.seq <= *last {
                    metrics::counter!("tocsin_ws_relay_repeats_dropped_total").increment(1);
                    continue;
                }
                *last = m.seq;
                let _ = tx.send(m.frame);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "unreadable frame on the WebSocket relay"),
        }
    }
    Err("subscription ended".into())
}
