//! `tocsin:plugin/websocket`: queue a message for the live stream.

use crate::deliver::Delivery;
use crate::plugin::bindings::channel::tocsin::plugin::websocket::Host;
use crate::plugin::HostCtx;

/// Largest WebSocket message a plugin may queue.
const MAX_BODY: usize = 256 * 1024;

impl Host for HostCtx {
    fn broadcast(&mut self, body: String) -> Result<(), String> {
        if !self.scope.grants.websocket {
            return Err(format!(
                "websocket broadcast refused: rule `{}` does not grant `websocket = true` to this channel",
                self.scope.rule
            ));
        }
        let bytes = body.len();
        self.queue_delivery(
            "websocket message",
            bytes,
            MAX_BODY,
            Delivery::WebSocket { body },
        )
    }
}
