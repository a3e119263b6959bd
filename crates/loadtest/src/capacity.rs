//! A lean open-model load generator for capacity: requests are sent at a fixed arrival rate whatever the answers
//! take, and each latency is measured from the request's *scheduled* time, so queueing shows up in the figures
//! instead of slowing the generator down (no coordinated omission). The rate ramps in steps until p99 passes the
//! SLO or errors pass 1 %; the last step within both is the knee.

use crate::svg::{Series, line_chart};
use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Most requests in flight; past it a request counts as an error (the server is hopelessly behind).
const MAX_IN_FLIGHT: usize = 20_000;

/// How to ramp.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    /// Base URL of the server.
    pub url: String,
    /// First arrival rate (requests per second).
    pub start_rate: u32,
    /// Added per step.
    pub step_rate: u32,
    /// Seconds per step.
    pub step_secs: u64,
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

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Scheduled arrival rate.
    pub rate: u32,
    /// Requests scheduled.
    pub sent: u64,
    /// Failed or refused.
    pub errors: u64,
    /// Latency percentiles from the scheduled time (ms).
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// End-to-end 202 → DELIVERED p95 on the sample (ms), when sampled.
    pub e2e_p95_ms: Option<f64>,
}

impl Step {
    /// Share of failed requests.
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.sent.max(1) as f64
    }
}

/// Refuses targets off the loopback range unless allowed.
pub fn check_target(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback || allow_remote,
        "{host} is not a loopback address; pass --allow-remote to load a remote server"
    );
    Ok(())
}

/// A request the generator sends.
#[derive(Clone)]
pub enum Target {
    /// `POST /v1/messages` as one of these users (tokens), with e2e sampling.
    Send(Arc<Vec<String>>),
    /// `GET` of this path (a bare endpoint for comparison).
    Get(String),
}

/// Sends `rate` requests per second for `duration`, each at its scheduled time; returns the step's figures.
pub async fn run_step(
    client: &reqwest::Client,
    url: &str,
    target: &Target,
    rate: u32,
    duration: Duration,
    e2e_every: u64,
    progress: Option<&ProgressBar>,
) -> Step {
    let total = (u64::from(rate) * duration.as_millis() as u64 / 1000).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new(3).expect("3 significant digits is valid"),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= MAX_IN_FLIGHT {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (client, url, target) = (client.clone(), url.to_owned(), target.clone());
        let (task_latencies, task_errors, task_samples, task_in_flight) = (
            latencies.clone(),
            errors.clone(),
            samples.clone(),
            in_flight.clone(),
        );
        tasks.spawn(async move {
            let (latencies, errors, samples, in_flight) = (task_latencies, task_errors, task_samples, task_in_flight);
            let request = match &target {
                Target::Send(tokens) => client
                    .post(format!("{url}/v1/messages"))
                    .bearer_auth(&tokens[i as usize % tokens.len()])
                    .json(&json!({"conversation_id": format!("capacity-{}", i % 1000), "content": "capacity probe"})),
                Target::Get(path) => client.get(format!("{url}{path}")),
            };
            let answer = request.send().await;
            let latency_us = scheduled.elapsed().as_micros() as u64;
            match answer {
                Ok(response) if response.status().is_success() => {
                    let _ = latencies.lock().unwrap_or_else(|p| p.into_inner()).record(latency_us.max(1));
                    if matches!(target, Target::Send(_)) && e2e_every > 0 && i % e2e_every == 0 {
                        let token = match &target {
                            Target::Send(tokens) => tokens[i as usize % tokens.len()].clone(),
                            Target::Get(_) => String::new(),
                        };
                        if let Ok(body) = response.json::<Value>().await
                            && let Some(id) = body["message_id"].as_str()
                        {
                            samples.lock().unwrap_or_else(|p| p.into_inner()).push((id.to_owned(), token));
                        }
                    }
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        if let Some(bar) = progress
            && i % u64::from(rate.max(10) / 10).max(1) == 0
        {
            let p99 = latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .value_at_quantile(0.99) as f64
                / 1000.0;
            bar.set_message(format!(
                "rate {rate}/s  p99 {p99:.1} ms  errors {}",
                errors.load(std::sync::atomic::Ordering::Relaxed)
            ));
            bar.tick();
        }
    }
    while tasks.join_next().await.is_some() {}
    let histogram = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let at = |q| histogram.value_at_quantile(q) as f64 / 1000.0;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    Step {
        rate,
        sent: total,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        e2e_p95_ms: end_to_end_p95(client, url, &samples).await,
    }
}

/// p95 of `delivered_at - timestamp` of the sampled messages, once they are delivered (waits up to 10 s).
async fn end_to_end_p95(
    client: &reqwest::Client,
    url: &str,
    samples: &[(String, String)],
) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delays = Vec::new();
    for (id, token) in samples {
        while Instant::now() < deadline {
            let Ok(response) = client
                .get(format!("{url}/v1/messages/{id}"))
                .bearer_auth(token)
                .send()
                .await
            else {
                break;
            };
            let Ok(message) = response.json::<Value>().await else {
                break;
            };
            if let (Some(accepted), Some(delivered)) = (
                message["timestamp"].as_i64(),
                message["delivered_at"].as_i64(),
            ) {
                delays.push((delivered - accepted) as f64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    delays.sort_by(f64::total_cmp);
    crate::stats::percentile(&delays, 95.0)
}

/// Registers `count` users and returns their tokens.
pub async fn users(
    client: &reqwest::Client,
    url: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let run = format!("{:x}", chat4all_core::time::now_millis());
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let credentials =
            json!({"username": format!("cap_{run}_{i}"), "password": "capacity-password"});
        client
            .post(format!("{url}/auth/register"))
            .json(&credentials)
            .send()
            .await?
            .error_for_status()?;
        let token: Value = client
            .post(format!("{url}/auth/token"))
            .json(&credentials)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tokens.push(
            token["access_token"]
                .as_str()
                .context("no access_token in the answer")?
                .to_owned(),
        );
    }
    Ok(tokens)
}

/// Ramps `target` until the SLO or the error limit breaks; returns every step.
pub async fn ramp(
    client: &reqwest::Client,
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
    let mut steps = Vec::new();
    let mut rate = options.start_rate.max(1);
    while rate <= options.max_rate {
        let step = run_step(
            client,
            &options.url,
            target,
            rate,
            Duration::from_secs(options.step_secs),
            options.e2e_sample_every,
            Some(&bar),
        )
        .await;
        let within =
            step.p99_ms <= options.slo_p99_ms && step.error_rate() <= options.max_error_rate;
        let line = format!(
            "{label}: {rate:>6}/s  p50 {:7.2} ms  p95 {:7.2} ms  p99 {:7.2} ms  errors {:.2} %{}",
            step.p50_ms,
            step.p95_ms,
            step.p99_ms,
            step.error_rate() * 100.0,
            step.e2e_p95_ms
                .map_or(String::new(), |e| format!("  e2e p95 {e:.0} ms"))
        );
        bar.suspend(|| println!("{line}")); // printed even when stderr is not a terminal and the bar is hidden
        steps.push(step);
        if !within {
            break;
        }
        rate += options.step_rate.max(1);
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

/// Writes `capacity.md` and `capacity.svg` into `dir`.
pub fn write_report(
    dir: &std::path::Path,
    options: &CapacityOptions,
    send: &[Step],
    bare: Option<&[Step]>,
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut md = format!(
        "# Capacity report\n\nOpen model, latency from the scheduled send time; SLO p99 ≤ {} ms, errors ≤ {:.1} %; steps of {} s.\n\n",
        options.slo_p99_ms,
        options.max_error_rate * 100.0,
        options.step_secs
    );
    let send_knee = knee(send, options);
    let _ = writeln!(
        md,
        "**Knee (POST /v1/messages): {}**\n",
        send_knee.map_or("below the first step".into(), |k| format!("{k} msg/s"))
    );
    if let Some(bare) = bare {
        let bare_knee = knee(bare, options);
        let _ = writeln!(
            md,
            "Bare endpoint (GET /health/live) knee: {}",
            bare_knee.map_or("below the first step".into(), |k| format!("{k} req/s"))
        );
        if let (Some(s), Some(b)) = (send_knee, bare_knee) {
            let _ = writeln!(
                md,
                "\n**Efficiency ratio (send knee / bare knee): {:.2}**\n",
                f64::from(s) / f64::from(b)
            );
        }
    }
    for (name, steps) in [
        ("POST /v1/messages", Some(send)),
        ("GET /health/live", bare),
    ] {
        let Some(steps) = steps else { continue };
        let _ = writeln!(
            md,
            "\n## {name}\n\n| rate/s | sent | p50 ms | p95 ms | p99 ms | errors | e2e p95 ms |\n|---|---|---|---|---|---|---|"
        );
        for s in steps {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} % | {} |",
                s.rate,
                s.sent,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.error_rate() * 100.0,
                s.e2e_p95_ms.map_or("-".into(), |e| format!("{e:.0}"))
            );
        }
    }
    let _ = writeln!(md, "\n![p99 against the arrival rate](capacity.svg)");
    let series = |name, steps: &[Step]| Series {
        name,
        points: steps
            .iter()
            .map(|s| (f64::from(s.rate), s.p99_ms))
            .collect(),
    };
    let mut chart = vec![series("send p99", send)];
    if let Some(bare) = bare {
        chart.push(series("bare p99", bare));
    }
    std::fs::write(
        dir.join("capacity.svg"),
        line_chart(
            "p99 latency against arrival rate",
            "requests/s",
            "ms",
            &chart,
        ),
    )?;
    let path = dir.join("capacity.md");
    std::fs::write(&path, md)?;
    Ok(path)
}
