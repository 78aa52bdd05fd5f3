//! Native fakes of the host, so plugin logic is tested with `cargo test`
//! and no engine: [`crate::state`] runs on an in-memory store with the
//! host's own semantics (`tocsin-state-ops`, the code the engine's backends
//! use), and [`crate::log`], [`crate::websocket`], [`crate::email`] and
//! [`crate::http`] are recorded. Everything is per thread (each test has
//! its own); [`reset`] starts over within one.
//!
//! ```
//! use tocsin_plugin_sdk::{state, testing};
//! testing::reset();
//! testing::set_now(1_000);
//! state::set("k", "v", Some(500));
//! assert_eq!(state::get("k").as_deref(), Some("v"));
//! testing::set_now(1_500);
//! assert_eq!(state::get("k"), None);
//! ```

use std::cell::RefCell;

use crate::types::{EmailMessage, HttpRequest, Level};

/// What a channel handed to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    WebSocket(String),
    Email(EmailMessage),
    Http(HttpRequest),
}

#[derive(Default)]
struct Host {
    state: tocsin_state_ops::Memory,
    logs: Vec<(Level, String)>,
    deliveries: Vec<Delivery>,
    refuse: Option<String>,
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

/// Forgets all state, logs and deliveries, and sets the clock to 0.
pub fn reset() {
    HOST.with(|h| *h.borrow_mut() = Host::default());
}

/// Sets the host clock the state operations see (ms since the epoch), for
/// expiries; windows use the `now` a plugin passes.
pub fn set_now(ms: i64) {
    HOST.with(|h| h.borrow_mut().state.now = ms);
}

/// Makes every later delivery fail with `error` (the host refusing it, as
/// for a URL outside the grants), or succeed again with `None`.
pub fn refuse_deliveries(error: Option<&str>) {
    HOST.with(|h| h.borrow_mut().refuse = error.map(str::to_string));
}

/// The log lines written so far.
pub fn logs() -> Vec<(Level, String)> {
    HOST.with(|h| h.borrow().logs.clone())
}

/// The deliveries accepted so far (refused ones are not recorded).
pub fn deliveries() -> Vec<Delivery> {
    HOST.with(|h| h.borrow().deliveries.clone())
}

/// Runs `f` on the in-memory state (to look at or seed it).
pub fn with_state<R>(f: impl FnOnce(&mut tocsin_state_ops::Memory) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut().state))
}

pub(crate) fn record_log(level: Level, message: &str) {
    HOST.with(|h| h.borrow_mut().logs.push((level, message.to_string())));
}

pub(crate) fn record(delivery: Delivery) -> Result<(), String> {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        match &h.refuse {
            Some(e) => Err(e.clone()),
            None => {
                h.deliveries.push(delivery);
                Ok(())
            }
        }
    })
}

/// An event as the host passes it to an aggregator: `code` from `service`,
/// severity high, received (and stamped) at `at`.
pub fn event(code: &str, service: &str, at: i64) -> crate::aggregator::ErrorEvent {
    crate::aggregator::ErrorEvent {
        event_id: format!("test-{code}-{at}"),
        source: "test".to_string(),
        error_code: code.to_string(),
        severity: crate::aggregator::Severity::High,
        message: format!("{code} in {service}"),
        service_name: service.to_string(),
        timestamp: at,
        received_at: at,
        user_message: None,
        user_id: None,
        stack_trace: None,
        metadata: Vec::new(),
    }
}

/// An alert as the host passes it to a channel (or, with `.into()`, to a
/// router): rule `test`, key `code|service`, three events, severity high.
pub fn alert(code: &str, service: &str) -> crate::channel::Alert {
    crate::channel::Alert {
        key: format!("{code}|{service}"),
        rule: "test".to_string(),
        count: 3,
        first_seen: 1_714_566_896_789,
        last_seen: 1_714_566_900_000,
        severity: crate::channel::Severity::High,
        title: format!("{code} x3 on {service}"),
        summary: format!("{code} occurred 3 times on {service}"),
        samples: vec![format!("{code} in {service}")],
        labels: vec![
            ("error-code".to_string(), code.to_string()),
            ("service".to_string(), service.to_string()),
        ],
    }
}
