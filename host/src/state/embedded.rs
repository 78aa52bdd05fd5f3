//! The embedded state store: an in-memory map made durable by a
//! write-ahead log with group commit.
//!
//! Why not one database write per event: at hundreds of thousands of events
//! per second an fsync per change is impossible. Every change appends the
//! entry's new value to a log buffer under the same lock as the map update,
//! and a flusher thread writes and fsyncs the buffer every couple of
//! milliseconds. [`EmbeddedState::sync`] lets a caller wait for the commit
//! that covers its changes (AMQP acks and HTTP `202`s wait on it) and wakes
//! the flusher at once: a waiter pays one fsync, not the rest of a period,
//! and everyone who waits while that fsync runs shares the next one.
//!
//! **Whole batches only.** A pipeline batch writes its dedup marks before
//! its plugin's counters; a log cut between them would, after a crash,
//! say "counted" of events whose counts were lost (and the re-sent events
//! would be skipped). So a batch holds [`EmbeddedState::open_batch`] from
//! its first write to its commit point, and the flusher cuts the buffer
//! only while no batch is open (a waiting cut holds new batches back, so
//! it is never starved): every durable prefix of the log is the state
//! after a set of whole batches, including what batches read of each
//! other. On open, the snapshot and
//! the log are replayed (last write wins, so replay is idempotent), a torn
//! tail is cut off, and a fresh snapshot replaces both.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::ops::{Entry, StateOps, Value};
use super::usage::{account, footprint, plugin_rule, usage_of, RuleUsage};
use super::StateError;
use crate::event::now_ms;

const SNAPSHOT: &str = "state.snapshot";
const LOG: &str = "state.log";
/// Rewrite the snapshot once the log grows past this.
const COMPACT_AT: u64 = 64 * 1024 * 1024;
/// Group-commit period: the longest a change waits to be written.
const COMMIT_EVERY: Duration = Duration::from_millis(2);
/// How often expired entries are dropped from memory (they are invisible
/// to reads from the moment they expire; this gives their memory back).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
enum Record {
    Put(String, Entry),
    Del(String),
}

/// [`Record`] by reference, for writing without cloning (bincode encodes
/// both the same way).
#[derive(Serialize)]
enum RecordRef<'a> {
    Put(&'a str, &'a Entry),
    Del(&'a str),
}

struct Inner {
    map: HashMap<String, Entry>,
    /// Encoded records not yet handed to the flusher.
    pending: Vec<u8>,
    /// Sequence number of the last change.
    seq: u64,
    /// What each rule's plugin keys hold ([`RuleUsage`]).
    usage: HashMap<String, RuleUsage>,
}

/// See the module documentation.
pub struct EmbeddedState {
    inner: Arc<Mutex<Inner>>,
    durable: tokio::sync::watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    /// Held (shared) by open batches, taken (exclusive) by the flusher to
    /// cut the buffer: see the module documentation.
    gate: Arc<tokio::sync::RwLock<()>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Cuts the flusher's pause short: someone waits for durability, or the
/// store is closing.
#[derive(Default)]
struct Wake {
    asked: Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl Wake {
    fn ring(&self) {
        *self.asked.lock() = true;
        self.cv.notify_one();
    }

    /// Waits up to `period` unless rung since the last wait.
    fn pause(&self, period: Duration) {
        let mut asked = self.asked.lock();
        if !*asked {
            self.cv.wait_for(&mut asked, period);
        }
        *asked = false;
    }
}

/// An open batch (see [`EmbeddedState::open_batch`]).
pub type BatchGuard = tokio::sync::OwnedRwLockReadGuard<()>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl EmbeddedState {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snapshot_path = dir.join(SNAPSHOT);
        let log_path = dir.join(LOG);
        let mut map = read_snapshot(&snapshot_path)?;
        let replayed = replay_log(&log_path, &mut map)?;
        let now = now_ms();
        map.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
        write_snapshot(dir, &map)?;
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        tracing::info!(keys = map.len(), replayed, dir = %dir.display(), "state opened");

        let inner = Arc::new(Mutex::new(Inner {
            usage: usage_of(&map),
            map,
            pending: Vec::new(),
            seq: 0,
        }));
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Wake::default());
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let flusher = {
            let inner = inner.clone();
            let stop = stop.clone();
            let wake = wake.clone();
            let gate = gate.clone();
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name("tocsin-state-flush".into())
                .spawn(move || flush_loop(dir, log, inner, tx, stop, &wake, &gate))
                .map_err(io_err(&log_path))?
        };
        Ok(Self {
            inner,
            durable: rx,
            stop,
            wake,
            gate,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    fn log_del(inner: &mut Inner, key: &str) {
        encode(&mut inner.pending, &RecordRef::Del(key));
        inner.seq += 1;
    }

    /// Runs `op` on the entry under `key` (see [`StateOps::update`]) and
    /// logs the change when `op` says it changed something. Synchronous:
    /// the map is in memory.
    pub fn apply<R>(&self, key: &str, op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool)) -> R {
        let host_now = now_ms();
        let rule = plugin_rule(key);
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if let Some(entry) = inner.map.get_mut(key) {
            let before = rule.map(|_| footprint(key, entry));
            // Moved out and back: no key allocation for an existing entry.
            let mut slot = Some(std::mem::replace(entry, Entry::EMPTY));
            let (out, changed) = op(&mut slot, host_now);
            let after = match slot {
                Some(new) => {
                    *entry = new;
                    if changed {
                        encode(&mut inner.pending, &RecordRef::Put(key, entry));
                        inner.seq += 1;
                    }
                    rule.map(|_| footprint(key, entry))
                }
                None => {
                    inner.map.remove(key);
                    Self::log_del(inner, key);
                    None
                }
            };
            if let Some(rule) = rule {
                account(&mut inner.usage, rule, before, after);
            }
            return out;
        }
        let mut slot = None;
        let (out, changed) = op(&mut slot, host_now);
        if let Some(entry) = slot {
            if changed {
                encode(&mut inner.pending, &RecordRef::Put(key, &entry));
                inner.seq += 1;
            }
            if let Some(rule) = rule {
                account(&mut inner.usage, rule, None, Some(footprint(key, &entry)));
            }
            inner.map.insert(key.to_string(), entry);
        }
        out
    }

    /// A copy of the entry under `key`, for a batch working on a private
    /// copy ([`super::overlay`]).
    pub(super) fn peek(&self, key: &str) -> Option<Entry> {
        self.inner.lock().map.get(key).cloned()
    }

    /// Under one lock: when `unchanged` holds of the map, stores every
    /// entry of `writes` (`None` deletes), logged together so no cut falls
    /// between them; returns whether it did. What a private copy commits
    /// with ([`super::overlay`]), needing no open batch.
    pub(super) fn apply_all(
        &self,
        unchanged: impl FnOnce(&HashMap<String, Entry>) -> bool,
        writes: Vec<(String, Option<Entry>)>,
    ) -> bool {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if !unchanged(&inner.map) {
            return false;
        }
        for (key, entry) in writes {
            let rule = plugin_rule(&key).map(str::to_string);
            let before = inner.map.get(&key).map(|e| footprint(&key, e));
            let after = entry.as_ref().map(|e| footprint(&key, e));
            match entry {
                Some(e) => {
                    encode(&mut inner.pending, &RecordRef::Put(&key, &e));
                    inner.seq += 1;
                    inner.map.insert(key, e);
                }
                None => {
                    inner.map.remove(&key);
                    Self::log_del(inner, &key);
                }
            }
            if let Some(rule) = rule {
                account(&mut inner.usage, &rule, before, after);
            }
        }
        true
    }

    /// What `rule`'s plugin keys hold here.
    pub fn rule_usage(&self, rule: &str) -> RuleUsage {
        self.inner
            .lock()
            .usage
            .get(rule)
            .copied()
            .unwrap_or_default()
    }

    /// Every rule holding plugin state here, with what it holds.
    pub fn usage(&self) -> Vec<(String, RuleUsage)> {
        let inner = self.inner.lock();
        inner.usage.iter().map(|(r, u)| (r.clone(), *u)).collect()
    }

    /// Drops every entry past its expiry from memory (reads already ignore
    /// them); returns how many. Not logged: a replay drops them too.
    pub fn sweep_expired(&self) -> usize {
        sweep(&self.inner)
    }

    /// Every live text value whose key starts with `prefix`.
    pub fn texts_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let now = now_ms();
        let inner = self.inner.lock();
        inner
            .map
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, e)| match e {
                Entry {
                    value: Value::Text(v),
                    expires_at,
                } if expires_at.is_none_or(|t| t > now) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Removes every entry whose key satisfies `pred` (Redis
    /// reconciliation drops what the replay moved to shared state; a
    /// removed rule's keys are purged); returns how many.
    pub fn drain_where(&self, pred: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.inner.lock();
        let keys: Vec<String> = inner.map.keys().filter(|k| pred(k)).cloned().collect();
        let n = keys.len();
        for k in keys {
            if let Some(e) = inner.map.remove(&k) {
                if let Some(rule) = plugin_rule(&k) {
                    let size = footprint(&k, &e);
                    account(&mut inner.usage, rule, Some(size), None);
                }
            }
            Self::log_del(&mut inner, &k);
        }
        n
    }

    /// Opens a batch: until the guard is dropped, no log cut falls inside
    /// its writes. Drop it before waiting for [`Self::sync`] (that waits
    /// for a cut).
    pub async fn open_batch(&self) -> BatchGuard {
        self.gate.clone().read_owned().await
    }

    /// Waits until all changes made before this call are on disk.
    pub async fn sync(&self) -> Result<(), StateError> {
        self.sync_point().await
    }

    /// What [`Self::sync`] waits for, taken now (the changes made so far,
    /// and the flusher woken for them) and awaitable later: a worker hands
    /// it to whoever answers the source and goes on with the next batch.
    pub fn sync_point(
        &self,
    ) -> impl std::future::Future<Output = Result<(), StateError>> + Send + 'static {
        let target = self.inner.lock().seq;
        let mut rx = self.durable.clone();
        if *rx.borrow() < target {
            self.wake.ring();
        }
        async move {
            rx.wait_for(|d| *d >= target)
                .await
                .map(|_| ())
                .map_err(|_| StateError::Closed)
        }
    }

    /// Number of keys held (including not yet swept expired ones).
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateOps for EmbeddedState {
    fn update<R: Send>(
        &self,
        key: &str,
        op: impl FnOnce(&mut Option<Entry>, i64) -> (R, bool) + Send,
    ) -> impl std::future::Future<Output = R> + Send {
        std::future::ready(self.apply(key, op))
    }
}

impl Drop for EmbeddedState {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.ring();
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Frames a record as `len u32 | crc32 u32 | bincode`, so a torn write at
/// the tail is detected on replay.
fn encode(out: &mut Vec<u8>, record: &RecordRef<'_>) {
    let Ok(payload) = bincode::serialize(record) else {
        return;
    };
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn read_snapshot(path: &Path) -> Result<HashMap<String, Entry>, StateError> {
    match File::open(path) {
        Ok(file) => bincode::deserialize_from(BufReader::new(file)).map_err(|e| StateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Applies every complete record of the log; returns how many.
fn replay_log(path: &Path, map: &mut HashMap<String, Entry>) -> Result<usize, StateError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io_err(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut at = 0usize;
    let mut count = 0usize;
    while at + 8 <= bytes.len() {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match bincode::deserialize::<Record>(payload) {
            Ok(Record::Put(k, e)) => {
                map.insert(k, e);
            }
            Ok(Record::Del(k)) => {
                map.remove(&k);
            }
            Err(_) => break,
        }
        at += 8 + len;
        count += 1;
    }
    if at < bytes.len() {
        tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - at, "state log had a torn tail; ignored it");
    }
    Ok(count)
}

fn write_snapshot(dir: &Path, map: &HashMap<String, Entry>) -> Result<(), StateError> {
    let tmp: PathBuf = dir.join(format!("{SNAPSHOT}.tmp"));
    let path = dir.join(SNAPSHOT);
    {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::new(file);
        bincode::serialize_into(&mut w, map).map_err(|e| StateError::Io {
            path: tmp.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `map` as the snapshot, then empties the log and moves its
/// write position back to the start (the file is not in append mode: a
/// truncation alone would leave the next record behind a hole of zeros,
/// which replay reads as the end of the log).
fn compact(dir: &Path, log: &mut File, map: &HashMap<String, Entry>) -> Result<(), StateError> {
    let log_path = dir.join(LOG);
    write_snapshot(dir, map)?;
    log.set_len(0).map_err(io_err(&log_path))?;
    log.seek(std::io::SeekFrom::Start(0))
        .map_err(io_err(&log_path))?;
    log.sync_all().map_err(io_err(&log_path))
}

fn flush_loop(
    dir: PathBuf,
    mut log: File,
    inner: Arc<Mutex<Inner>>,
    durable: tokio::sync::watch::Sender<u64>,
    stop: Arc<AtomicBool>,
    wake: &Wake,
    gate: &tokio::sync::RwLock<()>,
) {
    let log_path = dir.join(LOG);
    let mut log_len = 0u64;
    let mut swept_at = std::time::Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let (buf, seq, snapshot) = {
            // A cut between whole batches (see the module documentation).
            let _cut = gate.blocking_write();
            let mut g = inner.lock();
            let buf = std::mem::take(&mut g.pending);
            // Past the size, the snapshot replaces the log: the map as of
            // this very cut (whole batches, and everything in `buf`).
            let snapshot = (log_len + buf.len() as u64 > COMPACT_AT).then(|| g.map.clone());
            (buf, g.seq, snapshot)
        };
        if let Some(map) = snapshot {
            match compact(&dir, &mut log, &map) {
                Ok(()) => {
                    log_len = 0;
                    durable.send_replace(seq);
                    if stopping {
                        return;
                    }
                    wake.pause(COMMIT_EVERY);
                    continue;
                }
                // The log is whole still: append to it as usual.
                Err(e) => tracing::error!(error = %e, "state compaction failed"),
            }
        }
        if !buf.is_empty() {
            let written = log.write_all(&buf).and_then(|_| log.sync_data());
            match written {
                Ok(()) => {
                    log_len += buf.len() as u64;
                    durable.send_replace(seq);
                }
                Err(e) => {
                    // Keep the data: put it back in front and retry next round.
                    tracing::error!(error = %e, path = %log_path.display(), "state log write failed; retrying");
                    let mut g = inner.lock();
                    let newer = std::mem::take(&mut g.pending);
                    g.pending = buf;
                    g.pending.extend_from_slice(&newer);
                    drop(g);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
        } else if *durable.borrow() < seq {
            durable.send_replace(seq);
        }
        if stopping {
            return;
        }
        if swept_at.elapsed() >= SWEEP_EVERY {
            swept_at = std::time::Instant::now();
            sweep(&inner);
            // What expired, and what failed calls made the host lift.
            crate::memory::give_back();
        }
        wake.pause(COMMIT_EVERY);
    }
}

/// See [`EmbeddedState::sweep_expired`]; the flusher's thread runs it every
/// [`SWEEP_EVERY`].
fn sweep(inner: &Mutex<Inner>) -> usize {
    let now = now_ms();
    let mut g = inner.lock();
    let g = &mut *g;
    let before = g.map.len();
    let usage = &mut g.usage;
    g.map.retain(|k, e| {
        let live = e.expires_at.is_none_or(|t| t > now);
        if !live {
            if let Some(rule) = plugin_rule(k) {
                account(usage, rule, Some(footprint(k, e)), None);
            }
        }
        live
    });
    before - g.map.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tocsin-state-{name}-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).expect("tempdir");
        dir
    }

    #[tokio::test]
    async fn window_fires_at_threshold_and_resets() {
        let dir = tempdir("fire");
        let s = EmbeddedState::open(&dir).expect("open");
        assert_eq!(s.window_add("k", 2, 1000, 60_000, 3).await.fires, 0);
        let hit = s.window_add("k", 1, 2000, 60_000, 3).await;
        assert_eq!(
            (hit.before, hit.fires, hit.after, hit.window_start),
            (2, 1, 0, 1000)
        );
        let hit = s.window_add("k", 7, 3000, 60_000, 3).await;
        assert_eq!((hit.before, hit.fires, hit.after), (0, 2, 1));
    }

    #[tokio::test]
    async fn expired_window_starts_over() {
        let dir = tempdir("expire");
        let s = EmbeddedState::open(&dir).expect("open");
        s.window_add("k", 2, 1000, 500, 3).await;
        let hit = s.window_add("k", 1, 1600, 500, 3).await;
        assert_eq!(
            (hit.before, hit.fires, hit.after, hit.window_start),
            (0, 0, 1, 1600)
        );
    }

    #[tokio::test]
    async fn survives_reopen_after_sync() {
        let dir = tempdir("reopen");
        {
            let s = EmbeddedState::open(&dir).expect("open");
            s.window_add("k", 2, 1000, 600_000, 3).await;
            s.set("v", "x".into(), None).await;
            s.list_push("l", "a".into(), 2, None).await;
            s.list_push("l", "b".into(), 2, None).await;
            s.list_push("l", "c".into(), 2, None).await;
            s.sync().await.expect("sync");
        }
        let s = EmbeddedState::open(&dir).expect("reopen");
        assert_eq!(s.window_add("k", 1, 2000, 600_000, 3).await.fires, 1);
        assert_eq!(s.get("v").await.as_deref(), Some("x"));
        assert_eq!(
            s.list_take("l").await,
            vec!["a".to_string(), "b".to_string()]
        );
    }

    /// What is written after a compaction survives a reopen: the log
    /// starts again at its beginning, not behind a hole.
    #[tokio::test]
    async fn writes_after_a_compaction_survive_a_reopen() {
        let dir = tempdir("compact");
        let mb = "m".repeat(1 << 20);
        {
            let s = EmbeddedState::open(&dir).expect("open");
            for i in 0..(COMPACT_AT >> 20) + 4 {
                s.set(&format!("big-{i}"), mb.clone(), None).await;
                s.sync().await.expect("sync");
            }
            s.set("after", "kept".into(), None).await;
            s.set("big-0", "small".into(), None).await;
            s.sync().await.expect("sync");
            let log = fs::metadata(dir.join(LOG)).expect("log").len();
            assert!(log < COMPACT_AT, "the log was compacted: {log} bytes");
        }
        let s = EmbeddedState::open(&dir).expect("reopen");
        assert_eq!(s.get("after").await.as_deref(), Some("kept"));
        assert_eq!(s.get("big-0").await.as_deref(), Some("small"));
        assert_eq!(s.get("big-5").await.map(|v| v.len()), Some(1 << 20));
    }

    #[tokio::test]
    async fn torn_log_tail_is_ignored() {
        let dir = tempdir("torn");
        let mut bytes = Vec::new();
        encode(
            &mut bytes,
            &RecordRef::Put(
                "v",
                &Entry {
                    value: Value::Text("ok".into()),
                    expires_at: None,
                },
            ),
        );
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        fs::write(dir.join(LOG), &bytes).expect("write");
        let s = EmbeddedState::open(&dir).expect("open");
        assert_eq!(s.get("v").await.as_deref(), Some("ok"));
    }

    #[tokio::test]
    async fn set_if_absent_honours_ttl() {
        let dir = tempdir("nx");
        let s = EmbeddedState::open(&dir).expect("open");
        assert!(s.set_if_absent("q", "1".into(), Some(60_000)).await);
        assert!(!s.set_if_absent("q", "1".into(), Some(60_000)).await);
        assert!(s.set_if_absent("z", "1".into(), Some(0)).await);
        assert!(
            s.set_if_absent("z", "1".into(), Some(0)).await,
            "expired value counts as absent"
        );
    }

    /// The per-rule usage the quotas read follows every change, survives a
    /// reopen, and gives bytes back when keys are deleted or expire.
    #[tokio::test]
    async fn rule_usage_follows_writes_deletes_and_expiry() {
        let dir = tempdir("usage");
        let s = EmbeddedState::open(&dir).expect("open");
        let key = |k: &str| super::super::scoped_key("r", k);
        s.set(&key("a"), "x".repeat(1000), None).await;
        s.set(&key("b"), "y".repeat(500), Some(1)).await;
        s.set(&super::super::seen_key("r", "ev-1"), "1".into(), None)
            .await;
        let u = s.rule_usage("r");
        assert_eq!(u.keys, 2, "host keys are not the rule's: {u:?}");
        assert!(u.bytes >= 1500 && u.bytes < 1500 + 2 * 200, "{u:?}");
        s.set(&key("a"), "x".repeat(10), None).await;
        assert!(s.rule_usage("r").bytes < 600 + 2 * 200);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.sweep_expired(), 1);
        assert_eq!(s.rule_usage("r").keys, 1, "the expired key is given back");
        let held = s.rule_usage("r");
        s.sync().await.expect("sync");
        drop(s);
        let s = EmbeddedState::open(&dir).expect("reopen");
        assert_eq!(s.rule_usage("r"), held, "counted again on open");
        s.delete(&key("a")).await;
        assert_eq!(s.rule_usage("r"), RuleUsage::default());
    }
}
