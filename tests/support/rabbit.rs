//! An independent RabbitMQ publisher and inspector for tests (lapin, over
//! TCP to the real broker on 127.0.0.1:5672), and per-test names so tests
//! never share queues.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::Value;

/// The broker tests use.
pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A test's exchange and queue names, and a connection to publish with.
pub struct Rabbit {
    pub exchange: String,
    pub queue: String,
    conn: Connection,
    ch: Channel,
}

impl Rabbit {
    /// Connects with fresh names (`t-<label>-<uuid>`).
    pub async fn new(label: &str) -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let conn = Connection::connect(URL, ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ on 127.0.0.1:5672 (cargo xtask test starts it)")?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(Default::default()).await?;
        Ok(Self {
            exchange: format!("t-{label}-{id}"),
            queue: format!("t-{label}-{id}"),
            conn,
            ch,
        })
    }

    /// A second, independent connection to the same names.
    pub async fn another(&self) -> Result<Self> {
        let mut other = Self::new("other").await?;
        other.exchange = self.exchange.clone();
        other.queue = self.queue.clone();
        Ok(other)
    }

    /// This connection, using `other`'s names (after `other`'s connection
    /// died with the broker).
    pub fn into_names_of(mut self, other: &Rabbit) -> Self {
        self.exchange = other.exchange.clone();
        self.queue = other.queue.clone();
        self
    }

    /// Engine settings pointing at these names.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TOCSIN_AMQP_URL".into(), URL.into()),
            ("TOCSIN_AMQP_EXCHANGE".into(), self.exchange.clone()),
            ("TOCSIN_AMQP_QUEUE".into(), self.queue.clone()),
            ("TOCSIN_AMQP_BINDING".into(), "system.error.#".into()),
        ]
    }

    /// Publishes `body` persistently with `routing_key`, waiting for the
    /// broker's confirm.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<()> {
        self.ch
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await?
            .await?;
        Ok(())
    }

    /// Publishes a seed event.
    pub async fn publish_event(&self, event: &Value) -> Result<()> {
        self.publish("system.error.device", &serde_json::to_vec(event)?)
            .await
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub async fn ready(&self, queue: &str) -> Result<u32> {
        let q = self
            .ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    /// Takes up to `n` messages from the dead-letter queue, with headers.
    pub async fn dead_letters(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<(FieldTable, Vec<u8>)>> {
        let ch = self.conn.create_channel().await?;
        let mut consumer = ch
            .basic_consume(
                format!("{}.dead", self.queue).as_str().into(),
                "test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut out = Vec::new();
        while out.len() < n {
            let d = tokio::time::timeout(within, consumer.next())
                .await
                .map_err(|_| anyhow::anyhow!("only {} dead letters within {within:?}", out.len()))?
                .ok_or_else(|| anyhow::anyhow!("dead-letter consumer closed"))??;
            d.ack(BasicAckOptions::default()).await?;
            out.push((d.properties.headers().clone().unwrap_or_default(), d.data));
        }
        Ok(out)
    }

    /// Deletes this test's queues and exchanges.
    pub async fn cleanup(&self) {
        for q in [
            self.queue.clone(),
            format!("{}.retry", self.queue),
            format!("{}.dead", self.queue),
        ] {
            let _ = self
                .ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for x in [
            self.exchange.clone(),
            format!("{}.retry", self.exchange),
            format!("{}.dead", self.exchange),
        ] {
            let _ = self
                .ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// A header's text value.
pub fn header(headers: &FieldTable, key: &str) -> String {
    match headers.inner().get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
