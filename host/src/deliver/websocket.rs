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

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::event::Severity;

/// Frames kept for slow clients before they start losing the oldest.
const RING: usize = 4096;

/// One notification on the live stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WsFrame {
    pub rule: Arc<str>,
    pub severity: Severity,
    pub service: String,
    /// The JSON text rendered by the channel plugin.
    pub body: Arc<str>,
}

/// A frame on the cluster channel, tagged with the instance that sent it.
#[derive(Serialize, Deserialize)]
struct ClusterFrame {
    instance: String,
    frame: WsFrame,
}

struct Relay {
    conn: redis::aio::ConnectionManager,
    channel: String,
    instance: String,
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
    pub async fn clustered(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("[redis] url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| format!("connecting to Redis for the WebSocket relay: {e}"))?;
        let mut hub = Self::new();
        let relay = Arc::new(Relay {
            conn,
            channel: format!("{prefix}ws"),
            instance: uuid::Uuid::now_v7().to_string(),
        });
        hub.relay = Some(relay.clone());
        let tx = hub.tx.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = subscribe(&client, &relay, &tx).await {
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
                frame: frame.clone(),
            };
            if let Ok(text) = serde_json::to_string(&message) {
                let relay = relay.clone();
                tokio::spawn(async move {
                    let mut conn = relay.conn.clone();
                    let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                        .arg(&relay.channel)
                        .arg(text)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = sent {
                        metrics::counter!("tocsin_ws_relay_errors_total").increment(1);
                        tracing::debug!(error = %e, "WebSocket relay publish failed");
                    }
                });
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

async fn subscribe(
    client: &redis::Client,
    relay: &Relay,
    tx: &broadcast::Sender<WsFrame>,
) -> Result<(), String> {
    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub
        .subscribe(&relay.channel)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Ok(text) = msg.get_payload::<String>() else {
            continue;
        };
        match serde_json::from_str::<ClusterFrame>(&text) {
            Ok(m) if m.instance != relay.instance => {
                let _ = tx.send(m.frame);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "unreadable frame on the WebSocket relay"),
        }
    }
    Err("subscription ended".into())
}
