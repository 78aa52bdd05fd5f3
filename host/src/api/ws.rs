//! `GET /v1/ws`: the live notification stream.
//!
//! Query filters (comma-separated, all optional): `severity`, `service`,
//! `rule`. A client that falls behind loses its oldest frames (counted),
//! never anyone else's.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use crate::deliver::WsFrame;
use crate::engine::Engine;

/// What a client asked to see.
#[derive(Default, Debug)]
struct Filter {
    severity: Vec<String>,
    service: Vec<String>,
    rule: Vec<String>,
}

impl Filter {
    fn from_query(q: &HashMap<String, String>) -> Self {
        let split = |k: &str| -> Vec<String> {
            q.get(k)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            severity: split("severity"),
            service: split("service"),
            rule: split("rule"),
        }
    }

    fn accepts(&self, f: &WsFrame) -> bool {
        let ok = |list: &Vec<String>, v: &str| {
            list.is_empty() || list.iter().any(|x| x.eq_ignore_ascii_case(v))
        };
        ok(&self.severity, f.severity.as_str())
            && ok(&self.service, &f.service)
            && ok(&self.rule, &f.rule)
    }
}

/// Upgrades to a WebSocket streaming notifications.
pub async fn upgrade(
    State(engine): State<Engine>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let filter = Filter::from_query(&q);
    let rx = engine.hub.subscribe();
    ws.on_upgrade(move |socket| stream(socket, rx, filter))
}

async fn stream(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<WsFrame>,
    filter: Filter,
) {
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Ok(frame) => {
                    if filter.accepts(&frame)
                        && socket.send(Message::Text(frame.body.to_string().into())).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("tocsin_ws_dropped_total").increment(n);
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
