//! A clock shared by every process on the machine.
//!
//! Latencies cross processes: the generator stamps an event when it sends
//! it, and the webhook receiver (another process) stamps its arrival.
//! `std::time::Instant` cannot be exchanged between processes, but it is
//! `CLOCK_MONOTONIC` underneath, which is one system-wide clock on Linux;
//! reading it directly gives nanoseconds comparable across processes and
//! immune to wall-clock steps.

/// Nanoseconds on the system-wide monotonic clock.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
