//! `chat4all admin`: operator commands against a running server's `/admin` endpoints.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and how to prove we may administer it.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// Base URL of the running server.
    #[arg(long, env = "CHAT4ALL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token [default: read from <data-dir>/admin-token].
    #[arg(long, env = "CHAT4ALL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Data directory of the server, to read its admin token.
    #[arg(long, env = "CHAT4ALL_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Dead letters: list them, or send them back for another try.
    DeadLetters {
        /// What to do with them.
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Injects a fault into a simulated channel (down, flaky, slow) for a while, or ends it (ok).
    Fault {
        /// whatsapp or instagram.
        channel: String,
        /// down, flaky, slow or ok.
        mode: String,
        /// How long the fault lasts.
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
        /// For flaky: the share of calls that fail.
        #[arg(long)]
        failure_rate: Option<f64>,
        /// For slow: added latency in ms.
        #[arg(long)]
        extra_latency_ms: Option<u64>,
    },
    /// Reads a JSON log file and reports every instance whose heartbeat is older than the limit (exit 1 if any).
    Heartbeats {
        /// The log file (JSON lines, as `serve --log-format json` writes them).
        #[arg(long)]
        log: PathBuf,
        /// Silence allowed before an instance is reported.
        #[arg(long, default_value_t = 60)]
        max_silence_secs: u64,
    },
    /// Appends a raw record to a topic, such as an undecodable event to see it dead-lettered.
    Inject {
        /// Topic (messages, status-updates, outbound.whatsapp, …).
        #[arg(long)]
        topic: String,
        /// Partition key.
        #[arg(long)]
        key: String,
        /// Payload, sent as is.
        #[arg(long)]
        payload: String,
        /// Headers as name=value; repeat for more.
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
    },
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Lists dead letters, oldest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Replays dead letters (failed channel messages become PENDING and are delivered again).
    Replay {
        /// Only messages of this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Only dead letters parked since this time: milliseconds since the epoch, or an age such as 15m, 2h, 1d.
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
    },
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("header {text:?} must be name=value"))
}

fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "since {text:?} must be milliseconds since the epoch or an age such as 15m, 2h, 1d"
            ));
        }
    };
    let amount: i64 = number
        .parse()
        .map_err(|_| format!("since {text:?} is not a number with a unit"))?;
    Ok(chat4all_core::time::now_millis() - amount * seconds * 1000)
}

/// Runs an admin command and prints the server's answer.
pub fn run(target: AdminTarget, command: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::Heartbeats {
        log,
        max_silence_secs,
    } = &command
    {
        let now = chat4all_core::time::now_millis() as f64 / 1000.0;
        let silent = super::heartbeats::check(log, *max_silence_secs as f64, now)?;
        anyhow::ensure!(
            silent == 0,
            "{silent} instance(s) silent for more than {max_silence_secs} s"
        );
        return Ok(());
    }
    let token = match target.admin_token {
        Some(token) => token,
        None => {
            let path = target.data_dir.join("admin-token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no --admin-token given and {} is not readable",
                        path.display()
                    )
                })?
                .trim()
                .to_owned()
        }
    };
    let (method, path, body) = match command {
        AdminCommand::DeadLetters {
            command: DeadLetterCommand::List { limit },
        } => (
            reqwest::Method::GET,
            format!("/admin/dead-letters?limit={limit}"),
            None,
        ),
        AdminCommand::DeadLetters {
            command: DeadLetterCommand::Replay { channel, since },
        } => (
            reqwest::Method::POST,
            "/admin/dead-letters/replay".to_owned(),
            Some(json!({"channel": channel, "since": since})),
        ),
        AdminCommand::Fault {
            channel,
            mode,
            duration_secs,
            failure_rate,
            extra_latency_ms,
        } => (
            reqwest::Method::POST,
            format!("/admin/channels/{channel}/fault"),
            Some(
                json!({"mode": mode, "duration_secs": duration_secs, "failure_rate": failure_rate, "extra_latency_ms": extra_latency_ms}),
            ),
        ),
        AdminCommand::Heartbeats { .. } => unreachable!("answered from the log file above"),
        AdminCommand::Inject {
            topic,
            key,
            payload,
            headers,
        } => {
            let headers: serde_json::Map<String, Value> = headers
                .into_iter()
                .map(|(n, v)| (n, Value::String(v)))
                .collect();
            (
                reqwest::Method::POST,
                "/admin/events".to_owned(),
                Some(json!({"topic": topic, "key": key, "payload": payload, "headers": headers})),
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut request = client
            .request(
                method,
                format!("{}{path}", target.url.trim_end_matches('/')),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", target.url))?;
        let status = response.status();
        let text = response.text().await?;
        let pretty = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text);
        println!("{pretty}");
        anyhow::ensure!(status.is_success(), "the server answered {status}");
        Ok(())
    })
}
