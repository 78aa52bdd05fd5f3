//! The live WebSocket hub behind `GET /v1/ws`.
//!
//! A bounded broadcast ring: publishing never waits for clients, and a
//! client that stops reading falls behind, loses the oldest frames (counted
//! in `tocsin_ws_dropped_total`) and never slows anyone else down.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::event::Severity;

/// Frames kept for slow clients before they start losing the oldest.
const RING: usize = 4096;

/// One notification on the live stream.
#[derive(Clone, Debug)]
pub struct WsFrame {
    pub rule: Arc<str>,
    pub severity: Severity,
    pub service: String,
    /// The JSON text rendered by the channel plugin.
    pub body: Arc<str>,
}

/// Fan-out point for WebSocket clients. Cheap to clone.
#[derive(Clone)]
pub struct WsHub {
    tx: broadcast::Sender<WsFrame>,
}

impl Default for WsHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WsHub {
    /// A hub with the default ring size.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(RING);
        Self { tx }
    }

    /// Sends `frame` to every connected client.
    pub fn publish(&self, frame: WsFrame) {
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
