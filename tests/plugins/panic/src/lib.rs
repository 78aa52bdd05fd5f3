//! `panic`: an aggregator that panics with `boom: <message>` when a message
//! contains "panic", to prove a trap fails only that call and the panic
//! message reaches the host's log. It groups events in a `std` `HashMap`
//! first: a Rust guest's `HashMap` draws a random seed from WASI, which
//! must work (it trapped while the host shadowed WASI 0.2.6 with stubs).

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
        let mut by_message: std::collections::HashMap<&str, usize> = Default::default();
        for e in &events {
            *by_message.entry(e.message.as_str()).or_default() += 1;
        }
        if by_message.values().sum::<usize>() != events.len() {
            return Err("HashMap lost events".into());
        }
        if let Some(event) = events.iter().find(|e| e.message.contains("panic")) {
            panic!("boom: {}", event.message);
        }
        Ok(trivial::alerts(&events))
    }
}

export!(Panic);
