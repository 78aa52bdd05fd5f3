//! `tocsin dlq list` and `tocsin dlq replay`: the dead letters of a running
//! engine, through its HTTP API — the deliveries the outbox gave up on,
//! and (with `--amqp`, or listed beside them) the RabbitMQ messages in
//! `<queue>.dead` ([`crate::source::amqp::dlq`]).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
    /// List dead deliveries with their reason and attempts, and the
    /// RabbitMQ dead letters with their reason, retry rounds and age.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The RabbitMQ dead letters only.
        #[arg(long)]
        amqp: bool,
    },
    /// Send dead deliveries again with fresh attempts; with `--amqp`,
    /// publish RabbitMQ dead letters again with their routing key.
    Replay {
        /// Ids to replay (one delivery; with --amqp, any number of letters).
        ids: Vec<String>,
        /// Replay every one.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// The RabbitMQ dead letters, not the deliveries.
        #[arg(long)]
        amqp: bool,
        /// With --amqp: letters of this reason (malformed, processing-failed).
        #[arg(long, requires = "amqp")]
        reason: Option<String>,
        /// With --amqp: letters this rule failed on.
        #[arg(long, requires = "amqp")]
        rule: Option<String>,
        /// With --amqp: letters whose event has this error code.
        #[arg(long, requires = "amqp")]
        code: Option<String>,
        /// With --amqp: letters dead-lettered at most this long ago (24h).
        #[arg(long, requires = "amqp")]
        max_age: Option<String>,
    },
}

/// Runs `tocsin dlq ...`.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let base = args.engine.base();
    let http = reqwest::Client::new();
    let auth = |r| args.engine.auth(r);
    match args.action {
        DlqAction::List { json, amqp } => {
            let deliveries = match amqp {
                true => Value::Null,
                false => {
                    get(auth(http.get(format!(
                        "{base}/v1/deliveries?status=dead&limit=10000"
                    ))))
                    .await?
                }
            };
            let letters = auth(http.get(format!("{base}/v1/amqp/dead?limit=10000")))
                .send()
                .await
                .with_context(|| format!("GET {base}/v1/amqp/dead (is `tocsin run` up?)"))?;
            let letters = match letters.status() {
                // No RabbitMQ source: nothing to list there.
                reqwest::StatusCode::NOT_FOUND if !amqp => Value::Null,
                _ => answer(letters).await?,
            };
            if json {
                let all = json!({ "deliveries": deliveries["deliveries"], "amqp": letters });
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            if !amqp {
                print_deliveries(&deliveries);
            }
            if !letters.is_null() {
                print_letters(&letters);
            }
            Ok(())
        }
        DlqAction::Replay {
            ids,
            all,
            amqp: true,
            reason,
            rule,
            code,
            max_age,
        } => {
            let max_age_ms = match max_age {
                Some(t) => Some(
                    humantime::parse_duration(&t)
                        .with_context(|| format!("--max-age {t:?} is not a duration (24h, 90m)"))?
                        .as_millis() as u64,
                ),
                None => None,
            };
            let filter = json!({
                "ids": ids, "all": all, "reason": reason, "rule": rule, "code": code,
                "maxAgeMs": max_age_ms,
            });
            let url = format!("{base}/v1/amqp/dead/replay");
            let resp = auth(http.post(&url).json(&filter))
                .send()
                .await
                .with_context(|| format!("POST {url} (is `tocsin run` up?)"))?;
            let body = answer(resp).await?;
            let n = body["replayed"].as_array().map(Vec::len).unwrap_or(0);
            println!("replayed {n} dead letter{}", if n == 1 { "" } else { "s" });
            if let Some(stuck) = body["unroutable"].as_array().filter(|a| !a.is_empty()) {
                println!(
                    "left {} the exchange routes nowhere: {}",
                    stuck.len(),
                    stuck
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        DlqAction::Replay { ids, all, .. } => {
            let url = match (ids.as_slice(), all) {
                ([id], _) => format!("{base}/v1/deliveries/{id}/replay"),
                ([], true) => format!("{base}/v1/deliveries/replay"),
                ([], false) => anyhow::bail!("give a delivery id or --all"),
                _ => anyhow::bail!("one delivery id at a time (or --all)"),
            };
            let resp = auth(http.post(&url))
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let body = answer(resp).await?;
            let n = body["replayed"].as_array().map(Vec::len).unwrap_or(0);
            println!("replayed {n} deliver{}", if n == 1 { "y" } else { "ies" });
            Ok(())
        }
    }
}

async fn get(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await.context("is `tocsin run` up?")?;
    answer(resp).await
}

/// The JSON body of a successful answer, or an error with it.
async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let url = resp.url().to_string();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "{url} answered {status}: {}",
            body["error"].as_str().unwrap_or(&body.to_string())
        );
    }
    Ok(body)
}

fn print_deliveries(v: &Value) {
    let rows = v["deliveries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no dead deliveries");
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
}

fn print_letters(v: &Value) {
    let rows = v["letters"].as_array().cloned().unwrap_or_default();
    let queue = v["queue"].as_str().unwrap_or("");
    println!("{} dead letter(s) in {queue}", v["total"]);
    for l in rows {
        let age = l["ageMs"]
            .as_u64()
            .map(|ms| {
                humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
            })
            .unwrap_or_else(|| "?".into());
        println!(
            "{}  {:<17} rounds {} replays {} age {:<10} {:<20} {}  {}",
            l["id"].as_str().unwrap_or(""),
            l["reason"].as_str().unwrap_or(""),
            l["deaths"],
            l["replays"],
            age,
            l["routingKey"].as_str().unwrap_or(""),
            l["rules"]
                .as_array()
                .map(|r| r
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            l["error"].as_str().unwrap_or("")
        );
    }
}
