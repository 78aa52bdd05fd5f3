//! Graceful shutdown: what SIGTERM (or Ctrl-C) does, in order, within
//! `[engine] shutdown_secs`.
//!
//! 1. **Intake closes**: HTTP sources answer `503` with `Retry-After`
//!    (nothing of such a request was kept), `/readyz` answers `503`
//!    ("shutting down") so a load balancer stops sending, and the
//!    RabbitMQ consumer takes no more deliveries.
//! 2. **The queue drains**: every job already taken goes through the
//!    pipeline; its HTTP request gets its `202` once durable, its AMQP
//!    deliveries are acknowledged. Then the HTTP server stops.
//! 3. **Deliveries**: no new attempt starts; those running finish and
//!    their outcome is recorded. Everything else stays pending in the
//!    outbox, which the next start resumes.
//! 4. **Sync**: the outbox's writes and the state's log are on disk.
//!
//! Nothing acknowledged depends on this running to the end: a `202` or an
//! AMQP ack is given only for durable work, and the outbox is durable
//! before a delivery is attempted. So past the deadline, or on a second
//! signal, tocsin exits at once and loses nothing durable; what was cut
//! short (a request without its answer, an attempt without its outcome)
//! is sent again by its sender, or attempted again on the next start.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::engine::Engine;

/// Resolves on the first SIGTERM or SIGINT; a second one exits the
/// process at once (status 130).
pub async fn signalled() {
    let mut signals = Signals::new();
    signals.next().await;
    tracing::info!("shutting down: draining (a second signal exits at once)");
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The deadline of a shutdown starting now.
pub fn deadline(engine: &Engine) -> Instant {
    Instant::now() + Duration::from_secs(engine.config.engine.shutdown_secs)
}

/// Steps 1 and 2: closes the intake and waits until the pipeline holds
/// no job, or `deadline`. The HTTP server stops after this.
pub async fn drain_intake(engine: &Engine, deadline: Instant) {
    let started = Instant::now();
    let held = engine.pipeline.drain(deadline).await;
    if held > 0 {
        tracing::warn!(
            jobs = held,
            "shutdown deadline: jobs still in the pipeline (their senders get no answer and send again)"
        );
    } else {
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "intake closed and the queue drained"
        );
    }
}

/// Steps 3 and 4, once the HTTP server stopped: the RabbitMQ consumer's
/// last acknowledgements, the deliveries running, the outbox and the
/// state on disk.
pub async fn finish(engine: &Engine, deadline: Instant) -> anyhow::Result<()> {
    if let Some(amqp) = &engine.amqp {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, amqp.stopped()).await.is_err() {
            tracing::warn!("shutdown deadline: the RabbitMQ consumer had not stopped (the broker redelivers what it did not acknowledge)");
        }
    }
    let running = engine.deliverer.dispatcher().stop(deadline).await;
    if running > 0 {
        tracing::warn!(
            deliveries = running,
            "shutdown deadline: deliveries still being attempted (attempted again on the next start)"
        );
    }
    engine
        .deliverer
        .outbox()
        .flush()
        .await
        .context("flushing the outbox")?;
    engine.stats.flush().await;
    engine.state.sync().await.context("flushing state")?;
    tracing::info!("shut down");
    Ok(())
}
