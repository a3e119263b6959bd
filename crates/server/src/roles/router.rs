//! The router role: routes accepted messages and applies status updates.

use super::consume::BatchHandler;
use super::{Backends, Tasks};
use crate::telemetry::heartbeat::Pulse;
use chat4all_core::services::routing::Router;
use futures::FutureExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
fn register_metrics(partitions: u32) {
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

/// Starts the router: its consumers of `messages` and `status-updates`, routing to `channels`. Returns its pulse.
pub async fn start(
    tasks: &Tasks,
    backends: &Backends,
    channels: Vec<String>,
) -> anyhow::Result<Pulse> {
    let Backends {
        log,
        stores,
        topics,
    } = backends;
    register_metrics(log.partition_count());
    let router = Router::new(stores, log.clone(), topics.clone(), channels);
    let routed = Arc::new(AtomicU64::new(0));
    let on_messages = handler(router.clone(), Stream::Messages, routed.clone());
    tasks
        .consume_all(log, GROUP, &topics.messages, on_messages)
        .await?;
    let on_status = handler(router, Stream::StatusUpdates, routed.clone());
    tasks
        .consume_all(log, GROUP, &topics.status_updates, on_status)
        .await?;
    Ok(Pulse {
        service: "router",
        channel: None,
        processed: Box::new(move || routed.load(Ordering::Relaxed)),
        consumes: vec![
            (GROUP.to_owned(), topics.messages.clone()),
            (GROUP.to_owned(), topics.status_updates.clone()),
        ],
    })
}

fn handler(router: Router, stream: Stream, activity: Arc<AtomicU64>) -> BatchHandler {
    Arc::new(move |records| {
        let router = router.clone();
        let activity = activity.clone();
        async move {
            let started = Instant::now();
            let topic = stream.label();
            let outcome = match stream {
                Stream::Messages => router.route_messages(records).await,
                Stream::StatusUpdates => router.apply_status_updates(records).await,
            }?;
            // A batch holds one or more partitions' records, each partition's together.
            for part in records.chunk_by(|a, b| a.partition == b.partition) {
                let partition = part[0].partition.to_string();
                metrics::counter!("messages_consumed_total", "service" => "router", "topic" => topic, "partition" => partition)
                    .increment(part.len() as u64);
            }
            activity.fetch_add(records.len() as u64, Ordering::Relaxed);
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
