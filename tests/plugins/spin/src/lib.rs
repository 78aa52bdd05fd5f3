//! `spin`: an aggregator that never returns when a message contains
//! "spin", to prove the host's CPU deadline (epoch interruption) stops it
//! and that the next call gets a fresh, working instance.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregator",
});

#[path = "../../trivial.rs"]
mod trivial;

/// The component's exports.
struct Spin;

impl Guest for Spin {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn aggregate(_binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        if trivial::triggered(&events, "spin") {
            spin();
        }
        Ok(trivial::alerts(&events))
    }
}

/// Busy loop the optimiser cannot remove or prove infinite.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = core::hint::black_box(n.wrapping_add(1));
    }
}

export!(Spin);
