//! Several instances sharing one Redis: liveness, the shared outbox, and
//! takeover of a dead instance's deliveries.
//!
//! Why: each instance attempts deliveries from its own outbox (SQLite in
//! its data directory). If an instance dies, its data directory may never
//! come back, so every batch also writes its deliveries into a Redis hash
//! owned by the instance (`<prefix>\x1eoutbox\x1f<instance>`), in the same
//! atomic commit as its counters ([`crate::state::redis::txn`]). An entry leaves
//! the hash when its delivery is settled (delivered or dead). Each instance
//! refreshes a heartbeat key every second (it lives `[redis]
//! heartbeat_ttl_ms`, 15 s by default, so a busy machine's late heartbeat
//! is not a death); when one's heartbeat lapses, the first live instance
//! to notice moves the dead one's hash into its own (one Lua call, so
//! exactly one taker), notes each taken entry in the dead one's `taken`
//! set, and attempts the deliveries.
//!
//! An instance that was only late, not dead, checks that set before each
//! attempt (the dispatcher's fence) and does not send what was taken from
//! it. The same Redis step refreshes its heartbeat, so no takeover can
//! happen for a heartbeat's lifetime after the answer; a send that has not
//! started within half of it (the instance was stopped or starved between
//! the answer and the send) asks again. What remains is a delivery already
//! being sent at the moment the instance stopped, sent by both with the
//! same id.
//!
//! What this promises: every committed alert is delivered by some
//! instance. A delivery the dead instance had sent but not yet settled
//! (the instant between the receiver's "OK" and the settle) is sent again
//! by the taker: at-least-once, with the same `Message-ID` (email) and
//! `X-Tocsin-Delivery` header (webhooks), so receivers can drop the copy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use crate::deliver::dispatch::Fenced;
use crate::deliver::shared::decode;
use crate::deliver::{Deliverer, Status};
use crate::state::redis::outbox_key;
use crate::state::RedisState;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often (in heartbeats) an instance checks its own shared outbox.
const SWEEP_EVERY_TICKS: u64 = 30;

/// Moves a dead instance's outbox hash (KEYS[2]) into the taker's
/// (KEYS[3]) if the dead instance's heartbeat (KEYS[1]) is still absent,
/// drops it from the members (KEYS[5], ARGV[1]), and notes what was taken
/// (KEYS[4], a week) for the dead instance to retire should it come back.
const TAKE_OVER: &str = include_str!("lua/take-over.lua");

fn taken_key(instance: &str) -> String {
    format!("\u{1e}taken\u{1f}{instance}")
}

fn heartbeat_key(instance: &str) -> String {
    format!("\u{1e}instance\u{1f}{instance}")
}

/// Answers whether a delivery was taken over and, if not, refreshes the
/// heartbeat in the same step (see [`Cluster::fence`]).
const FENCE: &str = include_str!("lua/fence.lua");

const MEMBERS: &str = "\u{1e}instances";

/// Refreshes this instance's heartbeat (KEYS[1], ARGV[2] ms) and its
/// membership (KEYS[2], ARGV[1]) together, so an instance dropped from the
/// members while it could not reach Redis joins again.
const HEARTBEAT: &str = include_str!("lua/heartbeat.lua");

/// This instance's part in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    redis: Arc<RedisState>,
    /// How long an instance that stopped refreshing its heartbeat is
    /// still considered alive.
    heartbeat_ttl: Duration,
    heartbeat: Arc<Script>,
    take_over: Arc<Script>,
    fence: Arc<Script>,
}

impl Cluster {
    /// Registers this instance, adopts what its own previous run left in
    /// the shared outbox, and starts the heartbeat, the settle writer and
    /// the takeover watch.
    pub async fn start(
        redis: Arc<RedisState>,
        deliverer: &Deliverer,
        heartbeat_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let me = Self {
            redis,
            heartbeat_ttl,
            heartbeat: Arc::new(Script::new(HEARTBEAT)),
            take_over: Arc::new(Script::new(TAKE_OVER)),
            fence: Arc::new(Script::new(FENCE)),
        };
        me.heartbeat().await?;
        me.adopt_own(deliverer).await?;

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        deliverer.dispatcher().on_settled(tx);
        let fence = me.clone();
        deliverer
            .dispatcher()
            .set_fence(Arc::new(move |id| Box::pin(fence.clone().fence(id))));
        tokio::spawn(me.clone().settle_loop(rx));
        let watcher = me.clone();
        let deliverer = deliverer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            // Since when this instance's heartbeats have been reaching
            // Redis. After an outage every heartbeat has lapsed; taking
            // over then would take live instances' work, so wait until
            // theirs had time to come back.
            let mut healthy_since: Option<tokio::time::Instant> = None;
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                ticks += 1;
                if let Err(e) = watcher.heartbeat().await {
                    tracing::warn!(error = %e, "cluster heartbeat failed");
                    healthy_since = None;
                    continue;
                }
                let since = *healthy_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < watcher.heartbeat_ttl + HEARTBEAT_EVERY {
                    continue;
                }
                if let Err(e) = watcher.take_over_dead(&deliverer).await {
                    tracing::warn!(error = %e, "looking for dead instances failed");
                }
                // Entries committed to Redis whose local record failed
                // (an outbox error) are picked up here.
                if ticks.is_multiple_of(SWEEP_EVERY_TICKS) {
                    if let Err(e) = watcher.sweep_own(&deliverer).await {
                        tracing::warn!(error = %e, "checking this instance's shared outbox failed");
                    }
                }
            }
        });
        tracing::info!(instance = me.redis.instance(), "joined the cluster");
        Ok(me)
    }

    async fn heartbeat(&self) -> redis::RedisResult<()> {
        let mut conn = self.redis.connection();
        self.heartbeat
            .key(self.redis.key(&heartbeat_key(self.redis.instance())))
            .key(self.redis.key(MEMBERS))
            .arg(self.redis.instance())
            .arg(self.heartbeat_ttl.as_millis() as u64)
            .arg(crate::event::now_ms())
            .invoke_async(&mut conn)
            .await
    }

    /// The fence for delivery `id` (see the module documentation): taken
    /// over, or clear for half the heartbeat's lifetime from now, since
    /// the same step refreshed the heartbeat. Clear when Redis cannot say.
    async fn fence(self, id: String) -> Fenced {
        let asked = std::time::Instant::now();
        let until = asked + self.heartbeat_ttl / 2;
        let mut conn = self.redis.connection();
        let taken: redis::RedisResult<i64> = self
            .fence
            .key(self.redis.key(&taken_key(self.redis.instance())))
            .key(self.redis.key(&heartbeat_key(self.redis.instance())))
            .key(self.redis.key(MEMBERS))
            .arg(format!("d:{id}"))
            .arg(self.heartbeat_ttl.as_millis() as u64)
            .arg(crate::event::now_ms())
            .arg(self.redis.instance())
            .invoke_async(&mut conn)
            .await;
        match taken {
            Ok(1) => Fenced::Taken,
            Ok(_) => Fenced::Clear(until),
            Err(e) => {
                tracing::debug!(delivery = %id, error = %e, "the fence could not ask Redis; sending");
                Fenced::Clear(until)
            }
        }
    }

    /// Records locally the deliveries of this instance's hash that the
    /// local outbox does not know (their local commit failed) and sends them.
    async fn sweep_own(&self, deliverer: &Deliverer) -> anyhow::Result<()> {
        let key = self.redis.key(&outbox_key(self.redis.instance()));
        let mut conn = self.redis.connection();
        let fields: HashMap<String, String> = conn.hgetall(&key).await?;
        let (mut out, _) = decode(&fields);
        let mut missing = Vec::new();
        for d in std::mem::take(&mut out.deliveries) {
            // Young entries may be between their Redis and local commits.
            if crate::event::now_ms() - d.created_at < 10_000 {
                continue;
            }
            if deliverer.outbox().delivery(d.id.clone()).await?.is_none() {
                missing.push(d);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            deliveries = missing.len(),
            "recording shared outbox entries the local outbox missed"
        );
        let ids: std::collections::HashSet<&str> =
            missing.iter().map(|d| d.notification_id.as_str()).collect();
        out.notifications.retain(|n| ids.contains(n.id.as_str()));
        out.deliveries = missing;
        deliverer.commit(out).await?;
        Ok(())
    }

    /// Records in the local outbox what this instance's hash holds (a
    /// previous run may have died between the Redis commit and the local
    /// one), settles what the local outbox already finished, and retires
    /// local deliveries another instance took over while this one was down.
    async fn adopt_own(&self, deliverer: &Deliverer) -> anyhow::Result<()> {
        let key = self.redis.key(&outbox_key(self.redis.instance()));
        let mut conn = self.redis.connection();
        let fields: HashMap<String, String> = conn.hgetall(&key).await?;
        let (out, notes) = decode(&fields);
        let ids: std::collections::HashSet<String> =
            out.deliveries.iter().map(|d| d.id.clone()).collect();
        deliverer.replay(out).await?;
        let mut settled: Vec<String> = notes;
        for id in &ids {
            if let Some(row) = deliverer.outbox().delivery(id.clone()).await? {
                if row.status != Status::Pending {
                    settled.push(format!("d:{id}"));
                }
            }
        }
        let taken_key = self.redis.key(&taken_key(self.redis.instance()));
        let mut conn = self.redis.connection();
        let taken: Vec<String> = conn.smembers(&taken_key).await?;
        for field in &taken {
            let Some(id) = field.strip_prefix("d:") else {
                continue;
            };
            if let Some(mut row) = deliverer.outbox().delivery(id.to_string()).await? {
                if row.status == Status::Pending {
                    row.status = Status::HandedOver;
                    row.last_error =
                        Some("taken over by another instance while this one was down".into());
                    deliverer.outbox().update(&row);
                }
            }
        }
        deliverer.outbox().flush().await?;
        if !taken.is_empty() {
            tracing::warn!(
                deliveries = taken.len(),
                "another instance took over deliveries while this one was down; not sending them"
            );
            let mut conn = self.redis.connection();
            conn.del::<_, ()>(&taken_key).await?;
        }
        if !settled.is_empty() {
            let mut conn = self.redis.connection();
            conn.hdel::<_, _, ()>(&key, settled).await?;
        }
        Ok(())
    }

    /// Removes settled deliveries from this instance's hash, in batches;
    /// a batch Redis refused is retried with the next.
    async fn settle_loop(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<String>) {
        let key = self.redis.key(&outbox_key(self.redis.instance()));
        let mut ids = Vec::new();
        let mut fields: Vec<String> = Vec::new();
        while rx.recv_many(&mut ids, 256).await > 0 {
            fields.extend(ids.drain(..).map(|id| format!("d:{id}")));
            let mut conn = self.redis.connection();
            match conn.hdel::<_, _, ()>(&key, &fields).await {
                Ok(()) => fields.clear(),
                Err(e) => {
                    // Kept for the next batch; until then a takeover would
                    // send them again (at-least-once).
                    tracing::warn!(error = %e, n = fields.len(), "could not settle shared outbox entries; will retry");
                    tokio::time::sleep(HEARTBEAT_EVERY).await;
                }
            }
        }
    }

    /// Takes over the shared outbox of every instance whose heartbeat lapsed.
    async fn take_over_dead(&self, deliverer: &Deliverer) -> anyhow::Result<()> {
        let mut conn = self.redis.connection();
        let members: Vec<String> = conn.smembers(self.redis.key(MEMBERS)).await?;
        let mine = self.redis.key(&outbox_key(self.redis.instance()));
        for other in members.iter().filter(|m| *m != self.redis.instance()) {
            let mut conn = self.redis.connection();
            let alive: bool = conn.exists(self.redis.key(&heartbeat_key(other))).await?;
            if alive {
                continue;
            }
            let mut conn = self.redis.connection();
            let flat: Vec<String> = self
                .take_over
                .key(self.redis.key(&heartbeat_key(other)))
                .key(self.redis.key(&outbox_key(other)))
                .key(&mine)
                .key(self.redis.key(&taken_key(other)))
                .key(self.redis.key(MEMBERS))
                .arg(other)
                .invoke_async(&mut conn)
                .await?;
            let fields: HashMap<String, String> = flat
                .chunks(2)
                .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let (out, notes) = decode(&fields);
            let n = out.deliveries.len();
            metrics::counter!("tocsin_deliveries_taken_over_total").increment(n as u64);
            tracing::warn!(dead = %other, deliveries = n, "took over a dead instance's deliveries");
            deliverer.commit(out).await?;
            if !notes.is_empty() {
                let mut conn = self.redis.connection();
                conn.hdel::<_, _, ()>(&mine, notes).await?;
            }
        }
        Ok(())
    }
}
