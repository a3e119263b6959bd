//! The connector role: one set of consumers per channel, each delivering through its channel plugin.

use super::consume::{BatchHandler, Workers};
use chat4all_core::events::Topics;
use chat4all_core::ports::EventLog;
use chat4all_core::services::delivery::Delivery;
use futures::FutureExt;
use std::sync::Arc;

/// Starts the consumers of `delivery`'s channel on its outbound topic.
pub async fn start(
    workers: &mut Workers,
    log: &Arc<dyn EventLog>,
    delivery: Delivery,
    topics: &Topics,
) -> anyhow::Result<()> {
    let channel = delivery.channel_name().to_owned();
    let group = format!("connector-{channel}");
    let label = channel.clone();
    let handler: BatchHandler = Arc::new(move |records| {
        let (delivery, channel) = (delivery.clone(), label.clone());
        async move {
            let outcome = delivery.deliver(&records).await?;
            metrics::counter!("messages_sent_total", "service" => "connector", "channel" => channel.clone(), "status" => "DELIVERED")
                .increment(outcome.delivered as u64);
            metrics::counter!("messages_sent_total", "service" => "connector", "channel" => channel, "status" => "FAILED")
                .increment(outcome.failed as u64);
            Ok(())
        }
        .boxed()
    });
    workers
        .consume_all(log, &group, &topics.outbound(&channel), handler)
        .await
}
