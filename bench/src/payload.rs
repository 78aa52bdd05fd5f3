//! What the generator sends: seed-format events (~300 bytes) and
//! Alertmanager v2 alerts (~330 bytes), each carrying a marker with its
//! sequence number and send time.
//!
//! The marker (`bseq=<10 digits> bt=<20 digits>`) rides in the event's
//! message or the alert's summary annotation. tocsin copies that text into
//! the alert's samples and summary, and Alertmanager copies annotations
//! into its webhook body, so whoever receives the notification (the
//! generator's WebSocket client, the webhook receiver) can tell which
//! event it is about and how long ago it was sent, without any shared
//! table. Fixed-width digits keep every payload the same size.

use std::time::SystemTime;

/// Marker prefix of the sequence number.
const SEQ: &[u8] = b"bseq=";
/// Between the sequence number and the send time.
const T: &[u8] = b" bt=";
const SEQ_DIGITS: usize = 10;
const T_DIGITS: usize = 20;

/// The marker text of event `seq` sent at `sent_ns` (see [`crate::clock`]).
pub fn marker(seq: u64, sent_ns: u64) -> String {
    format!("bseq={seq:010} bt={sent_ns:020}")
}

fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Every `(seq, sent_ns)` marker in `text`, in order (a notification may
/// carry the same marker twice, e.g. in its samples and summary).
pub fn markers(text: &[u8]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut i = 0;
    let need = SEQ.len() + SEQ_DIGITS + T.len() + T_DIGITS;
    while i + need <= text.len() {
        if &text[i..i + SEQ.len()] != SEQ {
            i += 1;
            continue;
        }
        let s = i + SEQ.len();
        let t = s + SEQ_DIGITS;
        let parsed = (|| {
            let seq = digits(&text[s..t])?;
            if &text[t..t + T.len()] != T {
                return None;
            }
            let sent = digits(&text[t + T.len()..t + T.len() + T_DIGITS])?;
            Some((seq, sent))
        })();
        match parsed {
            Some(m) => {
                out.push(m);
                i += need;
            }
            None => i += 1,
        }
    }
    out
}

/// The shape of seed events to generate.
#[derive(Clone, Debug)]
pub struct Events {
    /// errorCode of every event (selects the benchmark's rule).
    pub code: String,
    /// Number of distinct serviceNames, cycled by sequence number.
    pub services: u64,
}

impl Events {
    /// One seed-format event, ~300 bytes of JSON.
    pub fn event(&self, seq: u64, sent_ns: u64) -> String {
        let service = seq % self.services.max(1);
        format!(
            concat!(
                r#"{{"errorCode":"{code}","severity":"high","serviceName":"bench-service-{service:06}","#,
                r#""message":"container for device d-{seq:010} exited with code 137 during start (OOMKilled) {marker}","#,
                r#""userId":"user-{user:05}","metadata":{{"deviceId":"d-{seq:010}","region":"eu-west-1"}}}}"#
            ),
            code = self.code,
            service = service,
            seq = seq,
            marker = marker(seq, sent_ns),
            user = seq % 977,
        )
    }
}

/// The shape of Alertmanager alerts to generate.
#[derive(Clone, Debug)]
pub struct Alerts {
    /// Distinct alertnames, cycled by sequence number.
    pub distinct: u64,
}

impl Alerts {
    /// One postable alert, ~330 bytes of JSON: labels alertname, severity,
    /// service, instance; a summary annotation; startsAt now (so that no
    /// two posts of the same labels look like Prometheus re-sending one).
    pub fn alert(&self, seq: u64, sent_ns: u64, starts_at: &str) -> String {
        let n = seq % self.distinct.max(1);
        let severity = if seq % 5 == 0 { "critical" } else { "warning" };
        format!(
            concat!(
                r#"{{"labels":{{"alertname":"BenchAlert{n:010}","severity":"{severity}","#,
                r#""service":"bench-svc-{svc:03}","instance":"host-{host:03}.bench.internal:9100"}},"#,
                r#""annotations":{{"summary":"Synthetic benchmark alert {marker}"}},"#,
                r#""startsAt":"{starts}","generatorURL":"http://prometheus.bench.internal:9090/graph"}}"#
            ),
            n = n,
            severity = severity,
            svc = seq % 1000,
            host = seq % 997,
            marker = marker(seq, sent_ns),
            starts = starts_at,
        )
    }
}

/// Now in RFC 3339 with milliseconds, as Prometheus sends `startsAt`.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// What one request carries.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `POST /v1/events`: one event object at batch 1, else an array.
    Events(Events),
    /// `POST /api/v2/alerts`: always an array.
    Alerts(Alerts),
}

impl Kind {
    /// The request path.
    pub fn path(&self) -> &'static str {
        match self {
            Kind::Events(_) => "/v1/events",
            Kind::Alerts(_) => "/api/v2/alerts",
        }
    }

    /// The success status: tocsin answers 202 to events; Alertmanager
    /// (and tocsin's Alertmanager API) answer 200.
    pub fn ok_status(&self) -> u16 {
        match self {
            Kind::Events(_) => 202,
            Kind::Alerts(_) => 200,
        }
    }

    /// The body for sequence numbers `seqs`, stamped `sent_ns`.
    pub fn body(&self, seqs: std::ops::Range<u64>, sent_ns: u64) -> String {
        let n = seqs.end.saturating_sub(seqs.start);
        match self {
            Kind::Events(e) if n == 1 => e.event(seqs.start, sent_ns),
            Kind::Events(e) => {
                let items: Vec<String> = seqs.map(|s| e.event(s, sent_ns)).collect();
                format!("[{}]", items.join(","))
            }
            Kind::Alerts(a) => {
                let now = rfc3339_now();
                let items: Vec<String> = seqs.map(|s| a.alert(s, sent_ns, &now)).collect();
                format!("[{}]", items.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_sizes() {
        let e = Events {
            code: "BENCH_INGEST".into(),
            services: 100,
        };
        let text = e.event(42, 1_234_567_890_123);
        assert!((280..=320).contains(&text.len()), "{} bytes", text.len());
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["serviceName"], "bench-service-000042");
        assert_eq!(markers(text.as_bytes()), vec![(42, 1_234_567_890_123)]);

        let a = Alerts { distinct: 10_000 };
        let text = a.alert(7, 99, "2026-01-01T00:00:00.123Z");
        assert!((310..=350).contains(&text.len()), "{} bytes", text.len());
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        let twice = format!("{text} and again {}", marker(7, 99));
        assert_eq!(markers(twice.as_bytes()), vec![(7, 99), (7, 99)]);
        assert!(markers(b"bseq=12 bt=3").is_empty());
    }
}
