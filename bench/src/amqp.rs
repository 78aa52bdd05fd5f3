//! RabbitMQ plumbing for the AMQP figure: the queue topology tocsin
//! expects, pre-publishing, queue depth, clean-up, and the no-op consumer
//! tocsin is compared with.
//!
//! Messages are published *before* the consumer starts, so the figure
//! measures how fast a consumer drains a backlog, not how fast this
//! publisher can publish. The main queue is declared exactly as tocsin's
//! source declares it (durable, dead-lettering to `<exchange>.retry`):
//! RabbitMQ refuses a redeclaration with other arguments, so a mismatch
//! would keep tocsin from ever consuming.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// The local broker (the brief's and the test suite's).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Routing key of the published events (matches tocsin's default binding).
pub const ROUTING_KEY: &str = "system.error.x";
/// tocsin's default prefetch (`[amqp] prefetch`); the no-op consumer uses
/// the same.
pub const PREFETCH: u16 = 512;

/// One run's exchange and queue names (unique, deleted afterwards).
#[derive(Clone, Debug)]
pub struct Names {
    pub exchange: String,
    pub queue: String,
}

impl Names {
    /// Fresh names: `tocsin-bench-<label>-<uuid>`.
    pub fn unique(label: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("tocsin-bench-{label}-{}", &id[..12]);
        Self {
            exchange: name.clone(),
            queue: name,
        }
    }

    /// tocsin's settings for these names.
    pub fn env(&self, url: &str) -> Vec<(String, String)> {
        vec![
            ("TOCSIN_AMQP_URL".into(), url.into()),
            ("TOCSIN_AMQP_EXCHANGE".into(), self.exchange.clone()),
            ("TOCSIN_AMQP_QUEUE".into(), self.queue.clone()),
            ("TOCSIN_AMQP_BINDING".into(), "system.error.#".into()),
        ]
    }
}

/// Connects, explaining what to do when the broker is not there.
pub async fn connect(url: &str) -> Result<Connection> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| {
            format!(
                "connecting to RabbitMQ at {} (is it running? `cargo xtask test` starts it, or `rabbitmq-server -detached`)",
                redact(url)
            )
        })
}

/// `amqp://user:pass@host` → `amqp://user:***@host`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Declares the exchange and the main queue as tocsin does, and binds it.
pub async fn declare(ch: &Channel, names: &Names) -> Result<()> {
    ch.exchange_declare(
        names.exchange.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .context("declaring the exchange")?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(format!("{}.retry", names.exchange).as_str().into()),
    );
    ch.queue_declare(
        names.queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .context("declaring the queue")?;
    ch.queue_bind(
        names.queue.as_str().into(),
        names.exchange.as_str().into(),
        "system.error.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .context("binding the queue")?;
    Ok(())
}

/// Publishes `n` persistent messages, `body(i)` each, with publisher
/// confirms (awaited a window at a time), then checks the queue holds them.
pub async fn publish(
    conn: &Connection,
    names: &Names,
    n: u64,
    body: impl Fn(u64) -> String,
) -> Result<()> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    declare(&ch, names).await?;
    const WINDOW: usize = 2_000;
    let mut pending = Vec::with_capacity(WINDOW);
    for i in 0..n {
        let confirm = ch
            .basic_publish(
                names.exchange.as_str().into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                body(i).as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(format!("bench-{i}").as_str().into()),
            )
            .await
            .context("publishing")?;
        pending.push(confirm);
        if pending.len() >= WINDOW {
            for c in pending.drain(..) {
                c.await.context("waiting for a publisher confirm")?;
            }
        }
    }
    for c in pending.drain(..) {
        c.await.context("waiting for a publisher confirm")?;
    }
    let ready = ready(&ch, &names.queue).await?;
    anyhow::ensure!(
        u64::from(ready) == n,
        "published {n} messages but the queue holds {ready}"
    );
    let _ = ch.close(200, "done".into()).await;
    Ok(())
}

/// Messages ready in `queue` (not counting unacknowledged ones).
pub async fn ready(ch: &Channel, queue: &str) -> Result<u32> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("inspecting queue {queue}"))?;
    Ok(q.message_count())
}

/// Deletes the run's queues and exchanges (and tocsin's retry/dead ones).
pub async fn cleanup(conn: &Connection, names: &Names) -> Result<()> {
    for q in [
        names.queue.clone(),
        format!("{}.retry", names.queue),
        format!("{}.dead", names.queue),
    ] {
        // Absent ones close the channel with 404; the deletion is
        // idempotent in intent, so use a fresh channel each time.
        let ch = conn.create_channel().await?;
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [
        names.exchange.clone(),
        format!("{}.retry", names.exchange),
        format!("{}.dead", names.exchange),
    ] {
        let ch = conn.create_channel().await?;
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    Ok(())
}

/// How the no-op consumer acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Every message acked on its own, the acks awaited concurrently with
    /// consuming: the fastest honest no-op consumer.
    Concurrent,
    /// Every message acked on its own by a separate task that awaits each
    /// ack before the next, which is how tocsin's AMQP source settles
    /// deliveries; a diagnostic, to show what that pattern costs.
    Sequential,
}

/// The no-op consumer: prefetch [`PREFETCH`], acknowledges every message
/// one by one (no `multiple`), does nothing else. Returns the wall time
/// from `basic.consume` to the `n`-th acknowledgement.
pub async fn noop_consume(conn: &Connection, queue: &str, n: u64, mode: Acks) -> Result<Duration> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let started = Instant::now();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "tocsin-bench-noop".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    match mode {
        Acks::Concurrent => {
            let mut acks = FuturesUnordered::new();
            let (mut got, mut acked) = (0u64, 0u64);
            while acked < n {
                tokio::select! {
                    Some(r) = acks.next(), if !acks.is_empty() => {
                        let r: lapin::Result<bool> = r;
                        r.context("acking")?;
                        acked += 1;
                    }
                    d = tokio::time::timeout(Duration::from_secs(30), consumer.next()), if got < n => {
                        let d = d
                            .map_err(|_| anyhow::anyhow!("no message for 30 s after {got} of {n}"))?
                            .context("the consumer was cancelled")?
                            .context("consuming")?;
                        got += 1;
                        acks.push(async move { d.ack(BasicAckOptions::default()).await });
                    }
                }
            }
        }
        Acks::Sequential => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let acker = tokio::spawn(async move {
                let mut acked = 0u64;
                while let Some(d) = rx.recv().await {
                    let d: lapin::message::Delivery = d;
                    d.ack(BasicAckOptions::default()).await.context("acking")?;
                    acked += 1;
                    if acked == n {
                        break;
                    }
                }
                anyhow::Ok(acked)
            });
            for got in 0..n {
                let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                    .await
                    .map_err(|_| anyhow::anyhow!("no message for 30 s after {got} of {n}"))?
                    .context("the consumer was cancelled")?
                    .context("consuming")?;
                if tx.send(d).is_err() {
                    break;
                }
            }
            let acked = acker.await.context("the acking task panicked")??;
            anyhow::ensure!(acked == n, "acked {acked} of {n}");
        }
    }
    let elapsed = started.elapsed();
    let _ = ch.close(200, "done".into()).await;
    Ok(elapsed)
}
