//! `hostile`: an aggregator that, on an event whose message names an
//! attack, tries to make the host hold or do too much in one call: the
//! host's quotas must refuse each attack as a plugin error and keep
//! serving. Any other message gets one alert per event.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregator",
});

#[path = "../../trivial.rs"]
mod trivial;

use tocsin::plugin::{log, state};

/// The component's exports.
struct Hostile;

const MB: usize = 1 << 20;

impl Guest for Hostile {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn aggregate(_binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        let mut alerts = trivial::alerts(&events);
        for e in &events {
            match e.message.as_str() {
                // One alert with an 8 MB title and an 8 MB summary.
                "big-alert" => {
                    alerts[0].title = "t".repeat(8 * MB);
                    alerts[0].summary = "s".repeat(8 * MB);
                }
                // 10,000 small alerts.
                "alert-flood" => {
                    let one = alerts[0].clone();
                    alerts = vec![one; 10_000];
                }
                // 100,000 labels on one alert.
                "big-labels" => {
                    alerts[0].labels = (0..100_000)
                        .map(|i| (format!("l{i}"), "v".into()))
                        .collect();
                }
                // 100,000 state keys of 1 KB.
                "many-keys" => {
                    let v = "k".repeat(1024);
                    for i in 0..100_000 {
                        state::set(&format!("key-{i}"), &v, None);
                    }
                }
                // Four 16 MB values (guest memory allows one at a time).
                "big-values" => {
                    for i in 0..4 {
                        state::set(&format!("big-{i}"), &"v".repeat(16 * MB), None);
                    }
                }
                // 1,000 list items of 64 KB.
                "big-list" => {
                    let item = "i".repeat(64 * 1024);
                    for _ in 0..1000 {
                        state::list_push("list", &item, 100_000, None);
                    }
                }
                // A 1 MB key.
                "big-key" => state::set(&"K".repeat(MB), "v", None),
                // 3 MB of keys per call, under the per-call quota: over many
                // calls the rule's own total is what stops it. The keys
                // live 6 s, so the rule's memory comes back.
                "creep" => {
                    let v = "c".repeat(60 * 1024);
                    let ttl = Some(6_000);
                    for _ in 0..50 {
                        let n = state::get("creep-n")
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0u64);
                        state::set(&format!("creep-{n}"), &v, ttl);
                        state::set("creep-n", &(n + 1).to_string(), ttl);
                    }
                }
                // 2,000 lines of 64 KB.
                "log-flood" => {
                    let line = "l".repeat(64 * 1024);
                    for _ in 0..2000 {
                        log::log(log::Level::Info, &line);
                    }
                }
                // A 10 MB error string.
                "big-error" => return Err("e".repeat(10 * MB)),
                // Recursion until the wasm stack runs out.
                "recurse" => {
                    alerts[0].count = recurse(core::hint::black_box(1));
                }
                _ => {}
            }
        }
        Ok(alerts)
    }
}

/// Recurses without end, keeping a frame's worth of data alive.
#[allow(unconditional_recursion)] // the attack
fn recurse(n: u64) -> u64 {
    let frame = core::hint::black_box([n; 64]);
    recurse(frame[(n % 64) as usize] + 1) + frame[0]
}

export!(Hostile);
