//! `sockets`: an aggregator that tries to open a TCP connection when a
//! message contains "connect". Rust's `std::net` makes the component
//! import `wasi:sockets`, which plugins never get: `tocsin plugin check`
//! must name that import, the engine must still load the plugin, and the
//! attempt must fail only that call.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregator",
});

#[path = "../../trivial.rs"]
mod trivial;

/// The component's exports.
struct Sockets;

impl Guest for Sockets {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn aggregate(_binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        if trivial::triggered(&events, "connect") {
            std::net::TcpStream::connect("127.0.0.1:9")
                .map_err(|e| format!("no connection: {e}"))?;
            return Err("connected, which a plugin must never do".into());
        }
        Ok(trivial::alerts(&events))
    }
}

export!(Sockets);
