//! One step of a capacity ramp: requests sent at a fixed arrival rate, each at its scheduled time whatever the
//! answers take, with latency measured from that scheduled time (so queueing shows instead of slowing the
//! generator), errors counted, and a sample of sends followed to DELIVERED for the end-to-end latency.

use super::Senders;
use super::failures::{Failure, FailureCounter, Failures};
use super::http::{Client, Prepared};
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Most requests in flight; past it a request counts as an error (the server is hopelessly behind).
const MAX_IN_FLIGHT: usize = 20_000;

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Scheduled arrival rate.
    pub rate: u32,
    /// Requests scheduled.
    pub sent: u64,
    /// Failed or refused, by kind.
    pub failures: Failures,
    /// Sent again on a new connection because the server had just closed the idle one (not failures).
    pub resent: u64,
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
        self.failures.total() as f64 / self.sent.max(1) as f64
    }
}

/// A request the generator sends.
#[derive(Clone)]
pub enum Target {
    /// `POST /v1/messages` as one of these users, with e2e sampling.
    Send(Arc<Senders>),
    /// A `GET` (a bare endpoint for comparison).
    Get(Prepared),
}

/// Conversations a run's sends are spread over.
const CONVERSATIONS: u64 = 1_000;

/// Sends `rate` requests per second for `duration`, each at its scheduled time; returns the step's figures.
pub async fn run_step(
    client: &Arc<Client>,
    target: &Target,
    rate: u32,
    duration: Duration,
    e2e_every: u64,
    progress: Option<&ProgressBar>,
) -> Step {
    let total = (u64::from(rate) * duration.as_millis() as u64 / 1000).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let requests = Arc::new(prepare(target));
    let latencies = Arc::new(Mutex::new(
        Histogram::<u64>::new(3).expect("3 significant digits is valid"),
    ));
    let failures = Arc::new(FailureCounter::default());
    let resent_before = client.resent();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= MAX_IN_FLIGHT {
            failures.count(Failure::Overflow);
            continue;
        }
        in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (client, requests, target) = (client.clone(), requests.clone(), target.clone());
        let (task_latencies, task_failures, task_samples, task_in_flight) = (
            latencies.clone(),
            failures.clone(),
            samples.clone(),
            in_flight.clone(),
        );
        tasks.spawn(async move {
            let (latencies, failures, samples, in_flight) =
                (task_latencies, task_failures, task_samples, task_in_flight);
            let request = &requests[(i % requests.len() as u64) as usize];
            let token = match &target {
                Target::Send(senders) => Some(&senders.tokens[i as usize % senders.tokens.len()]),
                Target::Get(_) => None,
            };
            let answer = client.send(request, token).await;
            let latency_us = scheduled.elapsed().as_micros() as u64;
            match answer {
                Ok((status, body)) if status.is_success() => {
                    let _ = latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(latency_us.max(1));
                    if let Some(token) = token
                        && e2e_every > 0
                        && i % e2e_every == 0
                        && let Ok(body) = serde_json::from_slice::<Value>(&body)
                        && let Some(id) = body["message_id"].as_str()
                    {
                        samples
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((id.to_owned(), token.clone()));
                    }
                }
                Ok((status, _)) if status.is_client_error() => {
                    failures.count(Failure::ClientStatus)
                }
                Ok(_) => failures.count(Failure::ServerStatus),
                Err(e) => failures.count(e.kind),
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
                failures.counts().total()
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
        failures: failures.counts(),
        resent: client.resent() - resent_before,
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        e2e_p95_ms: end_to_end_p95(client, &samples).await,
    }
}

/// The requests a step cycles through: a send to each of the run's conversations (the token is added per
/// request), or the one `GET`.
fn prepare(target: &Target) -> Vec<Prepared> {
    match target {
        Target::Send(senders) => (0..CONVERSATIONS)
            .map(|c| {
                let body = json!({"conversation_id": format!("capacity-{}-{c}", senders.run), "content": "capacity probe"});
                Prepared::post_json("/v1/messages", &body).expect("a fixed path and a JSON value")
            })
            .collect(),
        Target::Get(request) => vec![request.clone()],
    }
}

/// p95 of `delivered_at - timestamp` of the sampled messages, once they are delivered (waits up to 10 s).
async fn end_to_end_p95(client: &Client, samples: &[(String, HeaderValue)]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delays = Vec::new();
    for (id, token) in samples {
        let Ok(request) = Prepared::get(&format!("/v1/messages/{id}")) else {
            continue;
        };
        while Instant::now() < deadline {
            let Ok((_, body)) = client.send(&request, Some(token)).await else {
                break;
            };
            let Ok(message) = serde_json::from_slice::<Value>(&body) else {
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
