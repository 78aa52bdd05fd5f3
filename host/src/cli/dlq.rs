//! `tocsin dlq list` and `tocsin dlq replay <id>|--all`: the dead letters of
//! a running engine, through its HTTP API.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

/// Options of `tocsin dlq`.
#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(flatten)]
    pub engine: super::client::EngineArgs,
    #[command(subcommand)]
    pub action: DlqAction,
}

/// What to do with the dead letters.
#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List dead deliveries with their reason and attempts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead deliveries again, with fresh attempts.
    Replay {
        /// Delivery id to replay.
        id: Option<String>,
        /// Replay every dead delivery.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// Runs `tocsin dlq ...`.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let base = args.engine.base();
    let http = reqwest::Client::new();
    let auth = |r| args.engine.auth(r);
    match args.action {
        DlqAction::List { json } => {
            let url = format!("{base}/v1/deliveries?status=dead&limit=10000");
            let v: Value = auth(http.get(&url))
                .send()
                .await
                .with_context(|| format!("GET {url} (is `tocsin run` up?)"))?
                .error_for_status()?
                .json()
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let rows = v["deliveries"].as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no dead letters");
            }
            for d in rows {
                println!(
                    "{}  {:<28} {:<10} {:<7} attempts {}  {}",
                    d["id"].as_str().unwrap_or(""),
                    d["rule"].as_str().unwrap_or(""),
                    d["channel"].as_str().unwrap_or(""),
                    d["kind"].as_str().unwrap_or(""),
                    d["attempts"],
                    d["lastError"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        DlqAction::Replay { id, all } => {
            let url = match (&id, all) {
                (Some(id), _) => format!("{base}/v1/deliveries/{id}/replay"),
                (None, true) => format!("{base}/v1/deliveries/replay"),
                (None, false) => anyhow::bail!("give a delivery id or --all"),
            };
            let resp = auth(http.post(&url))
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                anyhow::bail!("{url} answered {status}: {body}");
            }
            let n = body["replayed"].as_array().map(Vec::len).unwrap_or(0);
            println!("replayed {n} deliver{}", if n == 1 { "y" } else { "ies" });
            Ok(())
        }
    }
}
