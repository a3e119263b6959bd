//! The connector role: one lane per assigned partition of the channel's outbound topic, delivering through the channel
//! plugin with its circuit breaker, retries and parking (see `core::services::delivery`).

use super::consume::PartitionLoop;
use super::{Backends, Tasks};
use crate::telemetry::heartbeat::Pulse;
use chat4all_core::ports::Channel;
use chat4all_core::services::delivery::{Delivery, DeliverySettings};
use futures::FutureExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The consumer group of a channel's connector.
pub fn group(channel: &str) -> String {
    format!("connector-{channel}")
}

/// Starts the connector of `channel`: its lanes and its series. Returns the delivery service (for `/health`)
/// and the role's pulse.
pub async fn start(
    tasks: &Tasks,
    backends: &Backends,
    channel: Arc<dyn Channel>,
    settings: DeliverySettings,
) -> anyhow::Result<(Delivery, Pulse)> {
    let Backends { log, topics, .. } = backends;
    let delivery = Delivery::new(channel, log.clone(), topics.clone(), settings);
    delivery.register_metrics();
    let channel = delivery.channel_name().to_owned();
    metrics::gauge!("circuit_breaker_state", "service" => "connector", "channel" => channel.clone())
        .set(delivery.breaker_state() as i32 as f64);
    metrics::gauge!("messages_pending", "service" => "connector", "channel" => channel.clone())
        .set(0.0);
    let group = group(&channel);
    let topic = topics.outbound(&channel);
    let lanes = delivery.clone();
    let each: PartitionLoop = Arc::new(move |consumer, stop| {
        let delivery = lanes.clone();
        async move { delivery.run(consumer, stop.cancelled_owned()).await }.boxed()
    });
    tasks.consume_partitions(log, &group, &topic, each).await?;
    let settled = delivery.settled();
    let pulse = Pulse {
        service: "connector",
        channel: Some(channel),
        processed: Box::new(move || settled.load(Ordering::Relaxed)),
        consumes: vec![(group, topic)],
    };
    Ok((delivery, pulse))
}
