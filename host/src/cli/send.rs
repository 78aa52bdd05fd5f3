//! `tocsin send`: post test events to a running engine (replaces the seed's
//! test script).

use anyhow::Context;
use clap::Args;
use serde_json::json;

/// Options of `tocsin send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Engine base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TOCSIN_URL")]
    pub url: String,
    /// Error code.
    #[arg(long, default_value = "DEVICE_START_FAILED")]
    pub code: String,
    /// Severity: critical, high, medium or low.
    #[arg(long, default_value = "high")]
    pub severity: String,
    /// Reporting service.
    #[arg(long, default_value = "device-service")]
    pub service: String,
    /// Message text.
    #[arg(long, default_value = "test event from tocsin send")]
    pub message: String,
    /// How many events to send (in one batch).
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: usize,
    /// Bearer token, when the engine sets `[ingest] token`.
    #[arg(long, env = "TOCSIN_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Posts the events and prints the engine's answer.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let events: Vec<_> = (0..args.count)
        .map(|i| {
            json!({
                "errorCode": args.code,
                "severity": args.severity,
                "message": if args.count > 1 { format!("{} ({}/{})", args.message, i + 1, args.count) } else { args.message.clone() },
                "serviceName": args.service,
            })
        })
        .collect();
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&url).json(&events);
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let resp = request
        .send()
        .await
        .with_context(|| format!("posting to {url} (is `tocsin run` up?)"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{status}: {body}");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}: {body}")
    }
}
