//! `tocsin silence add|list|expire`: a running engine's silences, through
//! its Alertmanager-compatible API (what `amtool silence` also uses).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::event::{format_rfc3339_ms, now_ms};
use crate::silence::parse_matcher;

/// Options of `tocsin silence`.
#[derive(Args, Debug)]
pub struct SilenceArgs {
    #[command(flatten)]
    pub engine: super::client::EngineArgs,
    #[command(subcommand)]
    pub action: SilenceAction,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum SilenceAction {
    /// Mute alerts matching every matcher (`service=db`, `alertname=~"DB_.*"`,
    /// `severity!=low`); labels are an alert's labels plus `rule`,
    /// `severity` and `alertname` (its error code).
    Add {
        /// Matchers, in Alertmanager's text form.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, from now: `2h`, `30m`, `1d`.
        #[arg(long, short = 'd', default_value = "1h")]
        duration: String,
        /// Why (shown with the silence and in the history).
        #[arg(long, short = 'm', required = true)]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
    },
    /// List silences (active and pending; `--expired` too).
    List {
        #[arg(long)]
        expired: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End silences now.
    Expire {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs `tocsin silence ...`.
pub async fn run(args: SilenceArgs) -> anyhow::Result<()> {
    let base = args.engine.base();
    let http = reqwest::Client::new();
    let auth = |r| args.engine.auth(r);
    match args.action {
        SilenceAction::Add {
            matchers,
            duration,
            comment,
            author,
        } => {
            let matchers = matchers
                .iter()
                .map(|m| parse_matcher(m).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let length: Duration = humantime::parse_duration(&duration)
                .with_context(|| format!("--duration {duration:?} (e.g. 2h, 30m)"))?;
            let start = now_ms();
            let end = start.saturating_add(i64::try_from(length.as_millis()).unwrap_or(i64::MAX));
            let by = author
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "tocsin".into());
            let body = json!({
                "matchers": matchers,
                "startsAt": format_rfc3339_ms(start),
                "endsAt": format_rfc3339_ms(end),
                "createdBy": by,
                "comment": comment,
            });
            let url = format!("{base}/api/v2/silences");
            let v = send(auth(http.post(&url).json(&body)), &url).await?;
            println!("{}", v["silenceID"].as_str().unwrap_or_default());
            Ok(())
        }
        SilenceAction::List { expired, json } => {
            let url = format!("{base}/api/v2/silences");
            let v = send(auth(http.get(&url)), &url).await?;
            let rows: Vec<Value> = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| expired || s["status"]["state"] != "expired")
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no silences");
            }
            for s in rows {
                let matchers: Vec<String> = s["matchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| {
                        serde_json::from_value::<crate::silence::Matcher>(m.clone()).ok()
                    })
                    .map(|m| m.display())
                    .collect();
                println!(
                    "{}  {:<8} until {}  {}  by {}: {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"]["state"].as_str().unwrap_or(""),
                    s["endsAt"].as_str().unwrap_or(""),
                    matchers.join(","),
                    s["createdBy"].as_str().unwrap_or(""),
                    s["comment"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        SilenceAction::Expire { ids } => {
            for id in ids {
                let url = format!("{base}/api/v2/silence/{id}");
                send(auth(http.delete(&url)), &url).await?;
                println!("expired {id}");
            }
            Ok(())
        }
    }
}

/// Sends `req`; its JSON answer, or the engine's error message.
async fn send(req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("{url} (is `tocsin run` up?)"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v["error"].as_str().map(str::to_string))
            })
            .unwrap_or(text);
        bail!("{url}: {status}: {message}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
