//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps freed heap memory for reuse: after a hostile
//! plugin call made the host lift a 10 MB error string or frame (then
//! refused it), or after a rule's expired state was swept, the process's
//! RSS would stay at its peak. [`give_back`] asks the allocator to return
//! what it holds free. It is called after a failed plugin call and by the
//! embedded store's sweep every few seconds, never on the hot path of a
//! healthy batch.

use std::sync::atomic::{AtomicI64, Ordering};

/// Least time between two trims, in ms: a storm of failing calls must not
/// turn into a storm of heap walks.
const AT_MOST_EVERY_MS: i64 = 1000;

static LAST: AtomicI64 = AtomicI64::new(0);

/// Returns free heap memory to the system (glibc `malloc_trim`), at most
/// once a second; a no-op on other allocators.
pub fn give_back() {
    let now = crate::event::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now - last < AT_MOST_EVERY_MS
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` only releases free pages of the allocator's own
    // arenas; it takes no pointers and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
