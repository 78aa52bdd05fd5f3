//! Hot reload: watch the plugins and rules directories and reload the
//! catalog when they change.
//!
//! Why debounce: a `cp` over a plugin is seen as several writes, a slow copy
//! as many; reloading on the first one would read a half-written file. The
//! watcher waits until the directories have been quiet for [`QUIET`] (at
//! most [`MAX_WAIT`]), and the catalog skips files whose content hash did not
//! change, so a half-written file that failed is simply retried when the
//! rest of it lands. Open/read notifications (including our own reads) are
//! ignored, or reading a file would trigger a reload of itself forever.

use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Mutex;

use super::Catalog;

/// Quiet time after the last change before reloading.
pub const QUIET: Duration = Duration::from_millis(25);
/// Longest a stream of changes can delay a reload.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// True for notifications that mean a file's content or presence changed.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// Starts watching; returns the watcher (dropping it stops watching) after
/// spawning the reload task.
/// Finished background compiles wake the same loop (the catalog's wake
/// channel), so their plugins load on the next reload.
pub fn spawn(catalog: Arc<Mutex<Catalog>>) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = catalog
        .try_lock()
        .map_err(|e| notify::Error::generic(&e.to_string()))?
        .wake_channel();
    let mut rx = match rx {
        Some(rx) => rx,
        None => return Err(notify::Error::generic("the catalog is already watched")),
    };
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if relevant(&event.kind) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        })?;
    let (plugins_dir, rules_dir) = {
        let c = catalog
            .try_lock()
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        let (p, r) = c.dirs();
        (p.to_path_buf(), r.to_path_buf())
    };
    watcher.watch(&plugins_dir, RecursiveMode::NonRecursive)?;
    watcher.watch(&rules_dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let started = tokio::time::Instant::now();
            loop {
                let left = MAX_WAIT.saturating_sub(started.elapsed());
                match tokio::time::timeout(QUIET.min(left), rx.recv()).await {
                    Ok(Some(())) if !left.is_zero() => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            let report = catalog.lock().await.reload().await;
            if !report.changed.is_empty() {
                tracing::info!(generation = report.generation, changed = ?report.changed, "reloaded");
            }
        }
    });
    Ok(watcher)
}
