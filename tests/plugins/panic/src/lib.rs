//! `panic`: an aggregator that panics with `boom: <message>` when a message
//! contains "panic", to prove a trap fails only that call and the panic
//! message reaches the host's log.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregator",
});

#[path = "../../trivial.rs"]
mod trivial;

/// The component's exports.
struct Panic;

impl Guest for Panic {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn aggregate(_binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        if let Some(event) = events.iter().find(|e| e.message.contains("panic")) {
            panic!("boom: {}", event.message);
        }
        Ok(trivial::alerts(&events))
    }
}

export!(Panic);
