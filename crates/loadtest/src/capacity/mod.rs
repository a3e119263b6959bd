//! A lean open-model load generator for capacity: requests are sent at a fixed arrival rate whatever the answers
//! take, and each latency is measured from the request's *scheduled* time, so queueing shows up in the figures
//! instead of slowing the generator down (no coordinated omission). The rate ramps in steps until p99 passes the
//! SLO or errors pass 1 %; the last step within both is the knee.
//!
//! Here: the options, the target check, the users the load runs as, and the ramp with its knee. One step (the
//! scheduler and what it measures) is in `step`; the Markdown and SVG report in `report`.

mod failures;
mod http;
mod report;
mod step;

pub use failures::{Failure, Failures};
pub use http::{Client, Prepared, SendError, bearer_value};
pub use report::write_report;
pub use step::{Step, Target, run_step};

use anyhow::Context;
use hyper::header::HeaderValue;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How to ramp.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    /// Base URL of the server.
    pub url: String,
    /// First arrival rate (requests per second).
    pub start_rate: u32,
    /// Added per step; 0 keeps the first rate (a soak), for `steps` steps.
    pub step_rate: u32,
    /// Most steps run; `None`: until `max_rate` (one step when `step_rate` is 0).
    pub steps: Option<u32>,
    /// Seconds per step.
    pub step_secs: u64,
    /// Seconds sent at the first rate before the first step, not counted: the generator opens its connections
    /// and the server creates the run's conversations, which a steady state has done long before.
    pub warmup_secs: u64,
    /// Highest rate tried.
    pub max_rate: u32,
    /// The p99 latency objective.
    pub slo_p99_ms: f64,
    /// Highest acceptable error share.
    pub max_error_rate: f64,
    /// Users the load is spread over (each has its own rate limit).
    pub users: usize,
    /// Every how many sends one is followed to DELIVERED for the end-to-end latency.
    pub e2e_sample_every: u64,
    /// Allow targets outside the loopback range.
    pub allow_remote: bool,
}

/// Refuses targets off the loopback range unless allowed.
pub fn check_target(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let parsed: hyper::Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
    let host = parsed.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback || allow_remote,
        "{host} is not a loopback address; pass --allow-remote to load a remote server"
    );
    Ok(())
}

/// The users a run sends as. Their names and conversations carry the run's id, so that a second run against the
/// same server starts with conversations of its own (a conversation belongs to the users who started it).
pub struct Senders {
    /// Distinguishes this run's users and conversations from an earlier run's.
    pub run: String,
    /// One `Authorization` value per user.
    pub tokens: Vec<HeaderValue>,
}

/// Registers `count` users for this run and returns them.
pub async fn senders(client: &Client, count: usize) -> anyhow::Result<Senders> {
    let run = format!("{:x}", chat4all_core::time::now_millis());
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let credentials =
            json!({"username": format!("cap_{run}_{i}"), "password": "capacity-password"});
        let register = Prepared::post_json("/auth/register", &credentials)?;
        client.succeed(&register, "registering a user").await?;
        let log_in = Prepared::post_json("/auth/token", &credentials)?;
        let body = client.succeed(&log_in, "logging in").await?;
        let token: Value = serde_json::from_slice(&body).context("the token answer is not JSON")?;
        tokens.push(bearer_value(
            token["access_token"]
                .as_str()
                .context("no access_token in the answer")?,
        )?);
    }
    Ok(Senders { run, tokens })
}

/// Ramps `target` until the SLO or the error limit breaks; returns every step.
pub async fn ramp(
    client: &Arc<Client>,
    options: &CapacityOptions,
    target: &Target,
    label: &str,
) -> Vec<Step> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(label.to_owned());
    let progress = &bar;
    let send = move |rate, secs, e2e_every| {
        let duration = Duration::from_secs(secs);
        run_step(client, target, rate, duration, e2e_every, Some(progress))
    };
    let mut rate = options.start_rate.max(1);
    if options.warmup_secs > 0 {
        let warmup = send(rate, options.warmup_secs, 0).await;
        bar.suspend(|| {
            println!(
                "{label}: warm-up {} s at {rate}/s, not counted: p99 {:.2} ms  errors {:.2} %",
                options.warmup_secs,
                warmup.p99_ms,
                warmup.error_rate() * 100.0
            )
        });
    }
    let most_steps = options
        .steps
        .unwrap_or(if options.step_rate == 0 { 1 } else { u32::MAX }) as usize;
    let mut steps = Vec::new();
    while rate <= options.max_rate && steps.len() < most_steps {
        let step = send(rate, options.step_secs, options.e2e_sample_every).await;
        let within =
            step.p99_ms <= options.slo_p99_ms && step.error_rate() <= options.max_error_rate;
        let line = format!(
            "{label}: {rate:>6}/s  p50 {:7.2} ms  p95 {:7.2} ms  p99 {:7.2} ms  errors {:.2} % ({} of {}){}{}{}",
            step.p50_ms,
            step.p95_ms,
            step.p99_ms,
            step.error_rate() * 100.0,
            step.failures.total(),
            step.sent,
            step.e2e_p95_ms
                .map_or(String::new(), |e| format!("  e2e p95 {e:.0} ms")),
            if step.failures.total() > 0 {
                format!("  [{}]", step.failures)
            } else {
                String::new()
            },
            if step.resent > 0 {
                format!(
                    "  [{} resent: idle connection closed by the server]",
                    step.resent
                )
            } else {
                String::new()
            },
        );
        bar.suspend(|| println!("{line}")); // printed even when stderr is not a terminal and the bar is hidden
        steps.push(step);
        if !within {
            break;
        }
        rate = rate.saturating_add(options.step_rate);
    }
    bar.finish_and_clear();
    steps
}

/// The highest rate whose step stayed within the SLO and the error limit.
pub fn knee(steps: &[Step], options: &CapacityOptions) -> Option<u32> {
    steps
        .iter()
        .take_while(|s| s.p99_ms <= options.slo_p99_ms && s.error_rate() <= options.max_error_rate)
        .map(|s| s.rate)
        .last()
}
