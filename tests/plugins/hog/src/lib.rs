//! `hog`: an aggregator that allocates without bound when a message
//! contains "hog", to prove the host's memory cap turns it into a trap that
//! fails only that call; and that leaks 2 MiB per call when a message
//! contains "leak" (as a runtime that never frees does, slowly), to prove
//! the host renews such an instance at its recycle mark before it traps.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "aggregator",
});

#[path = "../../trivial.rs"]
mod trivial;

/// The component's exports.
struct Hog;

impl Guest for Hog {
    fn configure(_binding: String, _config: String) -> Result<(), String> {
        Ok(())
    }

    fn aggregate(_binding: String, events: Vec<ErrorEvent>) -> Result<Vec<Alert>, String> {
        if trivial::triggered(&events, "hog") {
            hog();
        }
        if trivial::triggered(&events, "leak") {
            leak(2 << 20);
        }
        Ok(trivial::alerts(&events))
    }
}

/// Keep 1 MiB chunks alive forever, writing every page so the memory is
/// really used; ends when `memory.grow` fails and the allocator aborts.
fn hog() -> ! {
    const MIB: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; MIB];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 0xA5;
        }
        chunks.push(core::hint::black_box(chunk));
        core::hint::black_box(&chunks);
    }
}

thread_local! {
    /// What `leak` keeps: never freed while the instance lives.
    static LEAKED: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps `bytes` allocated (and touched) for the life of the instance.
fn leak(bytes: usize) {
    let mut chunk = vec![0u8; bytes];
    for byte in chunk.iter_mut().step_by(4096) {
        *byte = 0x5A;
    }
    LEAKED.with(|l| l.borrow_mut().push(core::hint::black_box(chunk)));
}

export!(Hog);
