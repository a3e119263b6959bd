//! The router role: routes accepted messages and applies status updates.

use super::consume::{BatchHandler, Workers};
use chat4all_core::events::Topics;
use chat4all_core::ports::EventLog;
use chat4all_core::services::routing::Router;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Instant;

/// Consumer group of the router.
pub const GROUP: &str = "router";

/// The two streams the router consumes.
#[derive(Clone, Copy)]
enum Stream {
    Messages,
    StatusUpdates,
}

/// Starts the router's consumers on `messages` and `status-updates`.
pub async fn start(
    workers: &mut Workers,
    log: &Arc<dyn EventLog>,
    router: Router,
    topics: &Topics,
) -> anyhow::Result<()> {
    workers
        .consume_all(
            log,
            GROUP,
            &topics.messages,
            handler(router.clone(), Stream::Messages),
        )
        .await?;
    workers
        .consume_all(
            log,
            GROUP,
            &topics.status_updates,
            handler(router, Stream::StatusUpdates),
        )
        .await
}

fn handler(router: Router, stream: Stream) -> BatchHandler {
    Arc::new(move |records| {
        let router = router.clone();
        async move {
            let started = Instant::now();
            let (topic, outcome) = match stream {
                Stream::Messages => ("messages", router.route_messages(&records).await?),
                Stream::StatusUpdates => ("status-updates", router.apply_status_updates(&records).await?),
            };
            metrics::counter!("messages_consumed_total", "service" => "router", "topic" => topic).increment(records.len() as u64);
            metrics::histogram!("processing_duration_seconds", "service" => "router", "topic" => topic)
                .record(started.elapsed().as_secs_f64());
            if outcome.dead_lettered > 0 {
                metrics::counter!("messages_failed_total", "service" => "router", "reason" => "undecodable")
                    .increment(outcome.dead_lettered as u64);
            }
            Ok(())
        }
        .boxed()
    })
}
