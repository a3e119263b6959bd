//! The connector role: one lane per partition of each channel's outbound topic, delivering through the channel
//! plugin with its circuit breaker, retries and parking (see `core::services::delivery`).

use super::consume::Workers;
use chat4all_core::events::Topics;
use chat4all_core::ports::EventLog;
use chat4all_core::services::delivery::Delivery;
use std::sync::Arc;

/// The consumer group of a channel's connector.
pub fn group(channel: &str) -> String {
    format!("connector-{channel}")
}

/// Starts the lanes of `delivery`'s channel.
pub async fn start(
    workers: &mut Workers,
    log: &Arc<dyn EventLog>,
    delivery: Delivery,
    topics: &Topics,
) -> anyhow::Result<()> {
    let channel = delivery.channel_name().to_owned();
    metrics::gauge!("circuit_breaker_state", "service" => "connector", "channel" => channel.clone())
        .set(delivery.breaker_state() as i32 as f64);
    metrics::gauge!("messages_pending", "service" => "connector", "channel" => channel.clone())
        .set(0.0);
    let group = group(&channel);
    let topic = topics.outbound(&channel);
    for partition in 0..log.partition_count() {
        let consumer = log.consumer(&group, &topic, partition).await?;
        let delivery = delivery.clone();
        workers
            .spawn(move |stop| async move { delivery.run(consumer, stop.cancelled_owned()).await });
    }
    Ok(())
}
