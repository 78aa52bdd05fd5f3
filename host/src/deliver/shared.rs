//! The outbox's records as they ride a batch's commit (see
//! [`crate::state::scope`]): one intent text on local state, or fields of
//! the instance's shared outbox hash on Redis, which [`crate::cluster`]
//! reads back ([`decode`]) to adopt or take over another instance's work.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{DeliveryRow, NotificationRow, Outgoing, Status};
use crate::state::Riders;

/// One shared-outbox entry: a delivery with its notification, or a
/// notification that has no delivery (kept until recorded locally).
#[derive(Serialize, Deserialize)]
pub struct SharedEntry {
    pub notification: Option<NotificationRow>,
    pub delivery: Option<DeliveryRow>,
}

/// Field prefix of a delivery (`d:<delivery id>`).
const DELIVERY: &str = "d:";
/// Field prefix of a notification without deliveries (`n:<id>`): settled
/// as soon as it is recorded locally.
const NOTIFICATION_ONLY: &str = "n:";

impl Riders for Outgoing {
    fn is_empty(&self) -> bool {
        Outgoing::is_empty(self)
    }

    fn intent(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| e.to_string())
    }

    fn shared_fields(&self) -> (Vec<(String, String)>, Vec<String>) {
        let by_id: HashMap<&str, &NotificationRow> = self
            .notifications
            .iter()
            .map(|n| (n.id.as_str(), n))
            .collect();
        let mut with_delivery = HashSet::new();
        let mut fields = Vec::new();
        let mut settled = Vec::new();
        for d in &self.deliveries {
            with_delivery.insert(d.notification_id.as_str());
            let entry = SharedEntry {
                notification: by_id.get(d.notification_id.as_str()).map(|n| (*n).clone()),
                delivery: Some(d.clone()),
            };
            if let Ok(json) = serde_json::to_string(&entry) {
                fields.push((format!("{DELIVERY}{}", d.id), json));
            }
        }
        for n in &self.notifications {
            if with_delivery.contains(n.id.as_str()) {
                continue;
            }
            let entry = SharedEntry {
                notification: Some(n.clone()),
                delivery: None,
            };
            if let Ok(json) = serde_json::to_string(&entry) {
                let field = format!("{NOTIFICATION_ONLY}{}", n.id);
                settled.push(field.clone());
                fields.push((field, json));
            }
        }
        (fields, settled)
    }
}

/// Outgoing work from shared-outbox fields, and the notification-only
/// fields (settled as soon as they are recorded locally).
pub fn decode(fields: &HashMap<String, String>) -> (Outgoing, Vec<String>) {
    let mut out = Outgoing::default();
    let mut notes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (field, json) in fields {
        let entry: SharedEntry = match serde_json::from_str(json) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(field, error = %e, "unreadable shared outbox entry skipped");
                continue;
            }
        };
        if let Some(n) = entry.notification {
            if seen.insert(n.id.clone()) {
                out.notifications.push(n);
            }
        }
        match entry.delivery {
            Some(mut d) => {
                d.status = Status::Pending;
                out.deliveries.push(d);
            }
            None => notes.push(field.clone()),
        }
    }
    (out, notes)
}
