//! The narrow handle every HTTP source gets: the pipeline's submit side,
//! the intake settings (tokens, Sentry keys and codes, the body limit) and
//! the ids seen recently, nothing of the rest of the engine. Like Vector's `SourceContext`, it
//! keeps sources from depending on the engine that depends on them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{body, error};
use crate::config::IngestConfig;
use crate::event::Event;
use crate::pipeline::PipelineHandle;

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    pipeline: PipelineHandle,
    settings: Arc<Settings>,
}

struct Settings {
    config: IngestConfig,
    max_body_bytes: usize,
    /// Alert ids seen recently (see [`super::recent`]).
    recent: parking_lot::Mutex<super::recent::Recent>,
}

impl Ingest {
    /// A handle submitting to `pipeline` with `config`'s tokens and keys
    /// and bodies of at most `max_body_bytes`.
    pub fn new(pipeline: PipelineHandle, config: IngestConfig, max_body_bytes: usize) -> Self {
        Self {
            pipeline,
            settings: Arc::new(Settings {
                config,
                max_body_bytes,
                recent: Default::default(),
            }),
        }
    }

    /// The `[ingest]` settings (tokens, Sentry keys and codes).
    pub fn config(&self) -> &IngestConfig {
        &self.settings.config
    }

    /// The alert ids this engine's sources saw recently.
    pub fn recent(&self) -> &parking_lot::Mutex<super::recent::Recent> {
        &self.settings.recent
    }

    /// Reads a request body under the size limit, decompressing it
    /// ([`body::read`]); the response to answer otherwise.
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
        source: &'static str,
    ) -> Result<Bytes, Response> {
        body::read(headers, body, self.settings.max_body_bytes, source).await
    }

    /// Queues `events`, counts the errors among them as received from
    /// `source` (resolutions have their own `tocsin_resolutions_total`),
    /// and returns once they are durable: what a `202` promises (see
    /// [`super`]), with the events a rule failed to count (event id →
    /// the rule and its error; counted in
    /// `tocsin_ingest_rule_failures_total{source}`). On failure the `503`
    /// to answer: the engine is shutting down, or what they caused could
    /// not be made durable (the sender retries; rules that counted them
    /// recognise their ids).
    pub async fn submit(
        &self,
        source: &'static str,
        events: Vec<Event>,
    ) -> Result<crate::pipeline::Failures, Response> {
        if events.is_empty() {
            return Ok(Default::default());
        }
        let n = errors_among(&events);
        let done = self
            .pipeline
            .submit_tracked(events)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        metrics::counter!("tocsin_events_received_total", "source" => source).increment(n);
        let outcome = done
            .await
            .map_err(|_| unavailable("the pipeline is shutting down".into()))?;
        outcome.durable.map_err(|e| {
            metrics::counter!("tocsin_ingest_not_durable_total", "source" => source).increment(1);
            unavailable(format!(
                "the events could not be made durable ({e}); send them again"
            ))
        })?;
        if !outcome.failed.is_empty() {
            metrics::counter!("tocsin_ingest_rule_failures_total", "source" => source)
                .increment(outcome.failed.len() as u64);
        }
        Ok(outcome.failed)
    }
}

/// `503` with `Retry-After`: nothing of the request was kept (or it may
/// not have been), and a re-send later is right.
fn unavailable(reason: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// How many of `events` are errors (what `tocsin_events_received_total`
/// counts; resolutions have `tocsin_resolutions_total`).
fn errors_among(events: &[Event]) -> u64 {
    events.iter().filter(|e| !e.resolved).count() as u64
}
