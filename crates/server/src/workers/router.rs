//! The router role: routes accepted messages and applies status updates.

use super::consume::{BatchHandler, Workers};
use chat4all_core::ports::EventLog;
use chat4all_core::services::routing::{BatchOutcome, Router};
use futures::FutureExt;
use std::sync::Arc;
use std::time::Instant;

/// Consumer group of the router.
pub const GROUP: &str = "router";

/// Starts the router's consumers on `messages` and `status-updates`.
pub async fn start(workers: &mut Workers, log: &Arc<dyn EventLog>, router: Router, topics: &chat4all_core::events::Topics) -> anyhow::Result<()> {
    let routing = router.clone();
    let on_messages: BatchHandler = Arc::new(move |records| {
        let router = routing.clone();
        async move {
            let started = Instant::now();
            let outcome = router.route_messages(&records).await?;
            record("messages", records.len(), &outcome, started);
            Ok(())
        }
        .boxed()
    });
    workers.consume_all(log, GROUP, &topics.messages, on_messages).await?;

    let on_status: BatchHandler = Arc::new(move |records| {
        let router = router.clone();
        async move {
            let started = Instant::now();
            let outcome = router.apply_status_updates(&records).await?;
            record("status-updates", records.len(), &outcome, started);
            Ok(())
        }
        .boxed()
    });
    workers.consume_all(log, GROUP, &topics.status_updates, on_status).await
}

fn record(topic: &'static str, consumed: usize, outcome: &BatchOutcome, started: Instant) {
    metrics::counter!("messages_consumed_total", "service" => "router", "topic" => topic).increment(consumed as u64);
    metrics::histogram!("processing_duration_seconds", "service" => "router", "topic" => topic).record(started.elapsed().as_secs_f64());
    if outcome.dead_lettered > 0 {
        metrics::counter!("messages_failed_total", "service" => "router", "reason" => "undecodable").increment(outcome.dead_lettered as u64);
    }
}
