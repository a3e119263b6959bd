//! The router role: routes accepted messages and applies status updates.

use super::consume::{BatchHandler, Workers};
use chat4all_core::events::Topics;
use chat4all_core::ports::EventLog;
use chat4all_core::services::routing::Router;
use futures::FutureExt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Consumer group of the router.
pub const GROUP: &str = "router";

/// The two streams the router consumes.
#[derive(Clone, Copy)]
enum Stream {
    Messages,
    StatusUpdates,
}

/// Registers the router's series at zero, per topic and partition.
pub fn register_metrics(partitions: u32) {
    Router::register_metrics();
    for stream in [Stream::Messages, Stream::StatusUpdates] {
        let topic = stream.label();
        for partition in 0..partitions {
            metrics::counter!("messages_consumed_total", "service" => "router", "topic" => topic, "partition" => partition.to_string())
                .absolute(0);
        }
        let _ = metrics::histogram!("processing_duration_seconds", "service" => "router", "topic" => topic);
    }
    undecodable().absolute(0);
}

fn undecodable() -> metrics::Counter {
    metrics::counter!("messages_failed_total", "service" => "router", "reason" => "undecodable")
}

impl Stream {
    /// The `topic` label of the stream's series.
    fn label(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::StatusUpdates => "status-updates",
        }
    }
}

/// Starts the router's consumers on `messages` and `status-updates`; `activity` counts the records consumed.
pub async fn start(
    workers: &mut Workers,
    log: &Arc<dyn EventLog>,
    router: Router,
    topics: &Topics,
    activity: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let on_messages = handler(router.clone(), Stream::Messages, activity.clone());
    workers
        .consume_all(log, GROUP, &topics.messages, on_messages)
        .await?;
    let on_status = handler(router, Stream::StatusUpdates, activity);
    workers
        .consume_all(log, GROUP, &topics.status_updates, on_status)
        .await
}

fn handler(router: Router, stream: Stream, activity: Arc<AtomicU64>) -> BatchHandler {
    Arc::new(move |records| {
        let router = router.clone();
        let activity = activity.clone();
        async move {
            let started = Instant::now();
            let topic = stream.label();
            let outcome = match stream {
                Stream::Messages => router.route_messages(&records).await?,
                Stream::StatusUpdates => router.apply_status_updates(&records).await?,
            };
            let partition = records.first().map_or(0, |r| r.partition).to_string();
            metrics::counter!("messages_consumed_total", "service" => "router", "topic" => topic, "partition" => partition)
                .increment(records.len() as u64);
            activity.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
            metrics::histogram!("processing_duration_seconds", "service" => "router", "topic" => topic)
                .record(started.elapsed().as_secs_f64());
            if outcome.dead_lettered > 0 {
                undecodable().increment(outcome.dead_lettered as u64);
            }
            Ok(())
        }
        .boxed()
    })
}
