//! The well-behaved part shared by the test aggregators (included with
//! `#[path]` so each crate stays a single cdylib without a support crate):
//! one alert per event, count 1, key = error code.

use crate::{Alert, ErrorEvent};

/// One alert per event.
pub fn alerts(events: &[ErrorEvent]) -> Vec<Alert> {
    events.iter().map(alert).collect()
}

/// Whether any event's message contains `word`, the tests' trigger.
#[allow(dead_code)] // `panic` needs the event itself, not just a yes/no
pub fn triggered(events: &[ErrorEvent], word: &str) -> bool {
    events.iter().any(|e| e.message.contains(word))
}

fn alert(event: &ErrorEvent) -> Alert {
    Alert {
        key: event.error_code.clone(),
        rule: String::new(),
        count: 1,
        first_seen: event.received_at,
        last_seen: event.received_at,
        severity: event.severity,
        title: format!("{} on {}", event.error_code, event.service_name),
        summary: event.message.clone(),
        samples: vec![event.message.clone()],
        labels: vec![
            ("error-code".to_string(), event.error_code.clone()),
            ("service".to_string(), event.service_name.clone()),
        ],
    }
}
