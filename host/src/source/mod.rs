//! Event sources. HTTP intake lives in [`crate::api::events`]; every source
//! validates with [`crate::event::parse_event`] and submits to the
//! [`crate::pipeline::PipelineHandle`]. The AMQP consumer and the
//! Alertmanager/Sentry receivers arrive with the ingestion issue.
