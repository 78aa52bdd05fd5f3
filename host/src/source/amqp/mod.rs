//! RabbitMQ source: consume the seed's error events at least once, without
//! loss and without counting a redelivery twice.
//!
//! Topology (declared on every connect; all durable):
//! - `exchange` (topic) ← `queue`, bound with each `binding` pattern;
//! - `queue` dead-letters rejected messages to `<exchange>.retry` (fanout)
//!   → `<queue>.retry`, whose TTL sends them back to `queue` after
//!   `retry_delay_ms`; RabbitMQ counts the rounds in the `x-death` header;
//! - `<exchange>.dead` (fanout) → `<queue>.dead`: messages tocsin gives up
//!   on, with `x-tocsin-reason` (and `x-tocsin-error`) headers saying why.
//!
//! A message is acknowledged only once everything its event caused is
//! durable (see [`crate::pipeline`]). A body that is not a valid event is
//! dead-lettered at once (never requeued in a loop). An event a rule failed
//! to count (plugin trap) is rejected into the retry loop, at most
//! `max_retries` times by its `x-death` count, then dead-lettered with the
//! last error. The pipeline recognises redelivered events by event id
//! (the body's `eventId`, else the message id, else a hash of the body).
//!
//! `amqps://` URLs connect over TLS (rustls): the broker's certificate is
//! checked against the URL's host, trusting the public webpki roots plus
//! the certificates of `ca_file` (read again on every connect, so a
//! renewed CA is picked up). A failed check is a failed connect, reported
//! in `/readyz` (`amqp.last_error`) and retried with the usual backoff.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ConnectionProperties, DefaultConnectionBuilder, ExchangeKind};
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;

pub mod backlog;
pub mod dead;
pub mod dlq;
pub mod recovery;
mod settle;

use crate::config::{AmqpConfig, TrustedRoots};
use crate::event::{now_ms, parse_event};
use crate::pipeline::PipelineHandle;
use backlog::BacklogCell;
use settle::{Item, Pending, Settler};

/// Deliveries taken into one pipeline job at most.
const BATCH: usize = 256;

/// Connection state, for `/readyz` and metrics.
#[derive(Default)]
pub struct AmqpStatus {
    inner: Mutex<StatusInner>,
    /// Set once the consumer stopped for good (shutdown), after its last
    /// acknowledgements went out.
    stopped: tokio::sync::watch::Sender<bool>,
    /// The queue's depths, the consumer's lag, pausing
    /// ([`backlog`]).
    pub backlog: Arc<BacklogCell>,
}

#[derive(Clone, Default, Serialize)]
struct StatusInner {
    connected: bool,
    since: i64,
    last_error: Option<String>,
    reconnects: u64,
}

impl AmqpStatus {
    fn set(&self, connected: bool, error: Option<String>) {
        let mut s = self.inner.lock();
        if s.connected != connected {
            s.since = now_ms();
        }
        if !connected && error.is_some() {
            s.reconnects += 1;
        }
        s.connected = connected;
        if error.is_some() {
            s.last_error = error;
        }
        metrics::gauge!("tocsin_amqp_connected").set(if connected { 1.0 } else { 0.0 });
    }

    /// Resolves once the consumer stopped for good: the pipeline closed
    /// ([`crate::shutdown`]), every job it submitted was acknowledged or
    /// rejected, and the connection is closed (the broker requeues what
    /// was prefetched and not submitted).
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// True while consuming.
    pub fn connected(&self) -> bool {
        self.inner.lock().connected
    }

    /// State as JSON for `/readyz`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.inner.lock().clone()).unwrap_or_default();
        v["backlog"] = serde_json::to_value(self.backlog.read()).unwrap_or_default();
        v
    }
}

/// Starts the consumer with reconnects; returns its status.
pub fn spawn(config: AmqpConfig, pipeline: PipelineHandle) -> Arc<AmqpStatus> {
    let status = Arc::new(AmqpStatus {
        inner: Mutex::default(),
        stopped: tokio::sync::watch::Sender::default(),
        backlog: BacklogCell::new(),
    });
    let st = status.clone();
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let session = session(&config, &pipeline, &st);
            tokio::pin!(session);
            let result = tokio::select! {
                r = &mut session => r,
                // Consuming: the session winds down itself. Still
                // connecting: nothing was taken, drop it.
                _ = pipeline.closing() => match st.connected() {
                    true => session.await,
                    false => Ok(()),
                },
            };
            if pipeline.is_closed() {
                st.set(false, None);
                st.stopped.send_replace(true);
                tracing::info!("RabbitMQ consumer stopped");
                return;
            }
            match result {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "RabbitMQ connection lost; reconnecting");
                    st.set(false, Some(e));
                }
            }
            // Backoff with ±25 % jitter: 0.5 s, 1 s, 2 s ... capped at 30 s.
            let base = 500u64.saturating_mul(1 << failures.min(6)).min(30_000);
            let jittered = (base as f64 * rand::rng().random_range(0.75..=1.25)) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(jittered)) => {}
                _ = pipeline.closing() => {}
            }
        }
    });
    status
}

fn text_arg(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// Declares exchanges, queues and bindings.
async fn declare(ch: &Channel, c: &AmqpConfig) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let qdurable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let retry_x = format!("{}.retry", c.exchange);
    let dead_x = format!("{}.dead", c.exchange);
    ch.exchange_declare(
        c.exchange.as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        retry_x.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        dead_x.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;

    let mut main_args = FieldTable::default();
    main_args.insert("x-dead-letter-exchange".into(), text_arg(&retry_x));
    ch.queue_declare(c.queue.as_str().into(), qdurable, main_args)
        .await?;

    let retry_q = format!("{}.retry", c.queue);
    let mut retry_args = FieldTable::default();
    retry_args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(c.retry_delay_ms as i64),
    );
    retry_args.insert("x-dead-letter-exchange".into(), text_arg(""));
    retry_args.insert("x-dead-letter-routing-key".into(), text_arg(&c.queue));
    ch.queue_declare(retry_q.as_str().into(), qdurable, retry_args)
        .await?;
    ch.queue_bind(
        retry_q.as_str().into(),
        retry_x.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let dead_q = format!("{}.dead", c.queue);
    ch.queue_declare(dead_q.as_str().into(), qdurable, FieldTable::default())
        .await?;
    ch.queue_bind(
        dead_q.as_str().into(),
        dead_x.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    for key in &c.binding {
        ch.queue_bind(
            c.queue.as_str().into(),
            c.exchange.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// A connection to the broker of `c` (TLS for `amqps://`, trusting
/// `ca_file` as read now).
pub(crate) async fn connect(c: &AmqpConfig) -> Result<lapin::Connection, String> {
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: TrustedRoots::load("[amqp] ca_file", &c.ca_file)?.map(|roots| roots.pem),
    };
    DefaultConnectionBuilder::new()
        .map_err(|e| format!("connecting to {}: {e}", redact(&c.url)))?
        .with_uri_str(c.url.clone())
        .with_properties(ConnectionProperties::default())
        .with_tls_config(tls)
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", redact(&c.url)))
}

/// One connection's life: declare, consume, hand batches to the pipeline.
async fn session(
    c: &AmqpConfig,
    pipeline: &PipelineHandle,
    status: &AmqpStatus,
) -> Result<(), String> {
    let conn = connect(c).await?;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    let publisher = conn.create_channel().await.map_err(|e| e.to_string())?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    declare(&ch, c)
        .await
        .map_err(|e| format!("declaring the topology: {e}"))?;
    ch.basic_qos(c.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = ch
        .basic_consume(
            c.queue.as_str().into(),
            "tocsin".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consuming {}: {e}", c.queue))?;
    status.set(true, None);
    let probe = tokio::spawn(backlog::probe(
        ch.clone(),
        c.queue.clone(),
        format!("{}.dead", c.queue),
        status.backlog.clone(),
    ));
    tracing::info!(queue = %c.queue, exchange = %c.exchange, bindings = ?c.binding, "consuming from RabbitMQ");

    let (ack_tx, ack_rx) = mpsc::channel::<Pending>(64);
    let settler = Settler {
        ch: ch.clone(),
        publisher,
        dead_exchange: format!("{}.dead", c.exchange),
        queue: c.queue.clone(),
        max_retries: c.max_retries,
    };
    let acks = tokio::spawn(settler.run(ack_rx));

    let result = loop {
        // Paused: what the broker pushed waits here unacknowledged.
        tokio::select! {
            biased;
            _ = pipeline.closing() => break Ok(()),
            _ = status.backlog.unpaused() => {}
        }
        let next = tokio::select! {
            biased;
            _ = pipeline.closing() => break Ok(()),
            d = consumer.next() => d,
        };
        let Some(first) = next else {
            break Err("the consumer was cancelled".to_string());
        };
        let mut batch = Vec::with_capacity(BATCH);
        match first {
            Ok(d) => batch.push(d),
            Err(e) => break Err(e.to_string()),
        }
        // Take whatever else is already here, without waiting.
        while batch.len() < BATCH {
            match futures::FutureExt::now_or_never(consumer.next()) {
                Some(Some(Ok(d))) => batch.push(d),
                _ => break,
            }
        }
        let received_at = now_ms();
        let source: Arc<str> = Arc::from("amqp");
        let mut events = Vec::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for d in batch {
            match decode(&d, &source, received_at) {
                Ok(event) => {
                    items.push(Item::Event(d, event.event_id.clone()));
                    events.push(event);
                }
                Err(reason) => items.push(Item::Bad(d, reason)),
            }
        }
        metrics::counter!("tocsin_events_received_total", "source" => "amqp")
            .increment(events.len() as u64);
        let oldest = events.iter().map(|e| e.timestamp).filter(|t| *t > 0).min();
        status.backlog.consumed(oldest.unwrap_or(0));
        let outcome = if events.is_empty() {
            None
        } else {
            match pipeline.submit_tracked(events).await {
                Ok(rx) => Some(rx),
                Err(e) => break Err(e.to_string()),
            }
        };
        if ack_tx.send(Pending { items, outcome }).await.is_err() {
            break Err("the acknowledger stopped".into());
        }
    };
    probe.abort();
    drop(ack_tx);
    let _ = acks.await;
    let why = if pipeline.is_closed() {
        "tocsin shutting down"
    } else {
        "tocsin reconnecting"
    };
    let _ = conn.close(200, why.into()).await;
    result
}

fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Turns a message into an event, or says why it cannot be one.
fn decode(
    d: &Delivery,
    source: &Arc<str>,
    received_at: i64,
) -> Result<crate::event::Event, String> {
    let value: serde_json::Value =
        serde_json::from_slice(&d.data).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let mut event = parse_event(0, &value, source, received_at).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.reason.clone()
                } else {
                    format!("{}: {}", e.field, e.reason)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    if value.get("eventId").and_then(|v| v.as_str()).is_none() {
        event.event_id = match d.properties.message_id() {
            Some(id) if !id.as_str().is_empty() => id.to_string(),
            _ => crate::event::id::of_bytes(&d.data),
        };
    }
    event.dedup = true;
    event.only_rules = dead::only_rules(d);
    Ok(event)
}
