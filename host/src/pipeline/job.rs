//! What a source hands the pipeline ([`Job`]), what it gets back
//! ([`JobOutcome`]), and the count of jobs in flight ([`Intake`]): shared
//! by the queue's workers and the isolated lane, so neither depends on
//! the other for them.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;

use tokio::sync::oneshot;

use crate::event::Event;

/// What happened to a tracked job.
#[derive(Debug)]
pub struct JobOutcome {
    /// Events a rule could not count (plugin trap or error), by event id,
    /// with the last error. Redelivering them is safe: rules that did
    /// count them recognise the event id.
    pub failed: HashMap<String, String>,
    /// Whether everything the job caused is durable; the error otherwise.
    pub durable: Result<(), String>,
}

/// Events from a source, and who wants to know when they are durable.
pub struct Job {
    pub events: Vec<Event>,
    pub done: Option<oneshot::Sender<JobOutcome>>,
}

/// Whether the pipeline still takes jobs, and how many it holds: what a
/// graceful shutdown ([`crate::shutdown`]) closes and waits on.
#[derive(Default)]
pub(super) struct Intake {
    pub(super) closed: tokio::sync::watch::Sender<bool>,
    /// Jobs submitted and not finished (queued or in a worker's batch,
    /// or the isolated lane's part of one).
    pub(super) held: AtomicUsize,
}
