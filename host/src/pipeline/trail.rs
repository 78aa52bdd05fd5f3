//! The batch's trail: what happened to each event, stage by stage — the
//! steps `GET /v1/trace/<event id>` shows. Stages report to the trail in
//! one line each, so tracing is a wrapper around the stages rather than
//! code woven through them.

use crate::event::Event;
use crate::plugin::bindings::ErrorEvent;
use crate::trace::Step;

/// Steps of one batch, by event id, in the order they happened.
#[derive(Default)]
pub struct Trail(Vec<(String, Step)>);

impl Trail {
    /// The trail of a batch that has just been taken: one `received` step
    /// per event, at its arrival time.
    pub fn received(events: &[Event]) -> Self {
        Self(
            events
                .iter()
                .map(|e| {
                    let mut step = Step::now("received").detail(format!("from {}", e.source));
                    step.at = e.received_at;
                    (e.event_id.clone(), step)
                })
                .collect(),
        )
    }

    /// Forgets the `received` steps (a second part of a batch, whose
    /// events another trail received).
    pub fn drop_received(&mut self) {
        self.0.retain(|(_, s)| s.stage != "received");
    }

    /// Records `step` for each of `ids`.
    pub fn ids<'a>(&mut self, ids: impl IntoIterator<Item = &'a String>, step: Step) {
        self.0
            .extend(ids.into_iter().map(|id| (id.clone(), step.clone())));
    }

    /// Records `step` for each of `events`.
    pub fn events<'a>(&mut self, events: impl IntoIterator<Item = &'a ErrorEvent>, step: Step) {
        self.ids(events.into_iter().map(|e| &e.event_id), step);
    }

    /// The steps, for [`crate::trace::Traces::record`].
    pub fn into_steps(self) -> Vec<(String, Step)> {
        self.0
    }
}
