//! Settling deliveries once the pipeline answered: ack what is durable,
//! send a plugin failure round the retry loop (at most `max_retries` times
//! by its `x-death` count), and dead-letter the rest with why
//! ([`super::dead::headers`]), confirmed before the ack.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::{Failure, JobOutcome};

pub(super) enum Item {
    Event(Delivery, String),
    Bad(Delivery, String),
}

pub(super) struct Pending {
    pub(super) items: Vec<Item>,
    pub(super) outcome: Option<oneshot::Receiver<JobOutcome>>,
}

/// Settles deliveries in order, once the pipeline says they are durable.
pub(super) struct Settler {
    pub(super) ch: Channel,
    pub(super) publisher: Channel,
    pub(super) dead_exchange: String,
    pub(super) queue: String,
    pub(super) max_retries: u32,
}

impl Settler {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(p) = rx.recv().await {
            if let Err(e) = self.settle(p).await {
                tracing::warn!(error = %e, "could not settle deliveries; RabbitMQ will redeliver them");
            }
        }
    }

    async fn settle(&self, p: Pending) -> Result<(), lapin::Error> {
        let outcome = match p.outcome {
            Some(rx) => Some(rx.await.unwrap_or(JobOutcome {
                failed: Default::default(),
                durable: Err("the pipeline dropped the job".into()),
            })),
            None => None,
        };
        if let Some(JobOutcome {
            durable: Err(e), ..
        }) = &outcome
        {
            tracing::error!(error = %e, "batch not durable; requeueing it");
            for item in &p.items {
                if let Item::Event(d, _) = item {
                    self.ch
                        .basic_nack(
                            d.delivery_tag,
                            BasicNackOptions {
                                multiple: false,
                                requeue: true,
                            },
                        )
                        .await?;
                }
            }
            return Ok(());
        }
        for item in p.items {
            match item {
                Item::Bad(d, reason) => {
                    metrics::counter!("tocsin_events_rejected_total", "source" => "amqp")
                        .increment(1);
                    tracing::warn!(reason = %reason, routing_key = %d.routing_key, "malformed message dead-lettered");
                    self.dead_letter(&d, super::dead::MALFORMED, &reason, None)
                        .await?;
                }
                Item::Event(d, id) => {
                    let failed = outcome.as_ref().and_then(|o| o.failed.get(&id));
                    match failed {
                        None => {
                            self.ch
                                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                                .await?;
                        }
                        Some(error) => {
                            let rounds = rejections(&d, &self.queue);
                            if rounds < u64::from(self.max_retries) {
                                metrics::counter!("tocsin_amqp_retries_total").increment(1);
                                self.ch
                                    .basic_reject(
                                        d.delivery_tag,
                                        BasicRejectOptions { requeue: false },
                                    )
                                    .await?;
                            } else {
                                metrics::counter!("tocsin_amqp_dead_lettered_total").increment(1);
                                let why = &error.error;
                                self.dead_letter(&d, super::dead::FAILED, why, Some(error))
                                    .await?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Publishes `d` to the dead-letter exchange (confirmed), then acks it.
    async fn dead_letter(
        &self,
        d: &Delivery,
        reason: &str,
        error: &str,
        failure: Option<&Failure>,
    ) -> Result<(), lapin::Error> {
        let headers = super::dead::headers(d, reason, error, failure);
        let props: BasicProperties = d
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let exchange: ShortString = self.dead_exchange.as_str().into();
        self.publisher
            .basic_publish(
                exchange,
                d.routing_key.clone(),
                BasicPublishOptions::default(),
                &d.data,
                props,
            )
            .await?
            .await?;
        self.ch
            .basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
    }
}

/// How many times `queue` rejected this message, from `x-death`.
pub(super) fn rejections(d: &Delivery, queue: &str) -> u64 {
    let Some(headers) = d.properties.headers() else {
        return 0;
    };
    super::dead::rounds(headers, |t| {
        super::dead::string(t, "queue").as_deref() == Some(queue)
            && super::dead::string(t, "reason").as_deref() == Some("rejected")
    })
}
