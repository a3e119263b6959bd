//! The connector role: one lane per assigned partition of the channel's outbound topic, delivering through the channel
//! plugin with its circuit breaker, retries and parking (see `core::services::delivery`).

use super::consume::PartitionLoop;
use super::{Backends, Tasks};
use crate::telemetry::heartbeat::Pulse;
use chat4all_connectors::{Fault, FaultSwitch};
use chat4all_core::ports::Channel;
use chat4all_core::services::control::{ConnectorReport, Control};
use chat4all_core::services::delivery::{Delivery, DeliverySettings};
use chat4all_core::time::now_millis;
use futures::FutureExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How often a connector looks for an injected fault and for a change worth reporting.
const CONTROL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest time between two reports when nothing but the parked count changes.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The consumer group of a channel's connector.
pub fn group(channel: &str) -> String {
    format!("connector-{channel}")
}

/// Starts the connector of `channel`: its lanes, its series, and its control loop (the operator's faults in,
/// its reports out, both through the store). Returns the role's pulse.
pub async fn start(
    tasks: &Tasks,
    backends: &Backends,
    channel: Arc<dyn Channel>,
    faults: Arc<FaultSwitch>,
    settings: DeliverySettings,
) -> anyhow::Result<Pulse> {
    let Backends {
        log,
        topics,
        stores,
    } = backends;
    let delivery = Delivery::new(channel, log.clone(), topics.clone(), settings);
    delivery.register_metrics();
    let channel = delivery.channel_name().to_owned();
    metrics::gauge!("circuit_breaker_state", "service" => "connector", "channel" => channel.clone())
        .set(delivery.breaker_state() as i32 as f64);
    metrics::gauge!("messages_pending", "service" => "connector", "channel" => channel.clone())
        .set(0.0);
    // The fault in force applies before the first delivery, not one control tick later.
    let control = Control::new(stores);
    apply_fault(&control, &channel, &faults).await;
    let group = group(&channel);
    let topic = topics.outbound(&channel);
    let lanes = delivery.clone();
    let each: PartitionLoop = Arc::new(move |consumer, stop| {
        let delivery = lanes.clone();
        async move { delivery.run(consumer, stop.cancelled_owned()).await }.boxed()
    });
    tasks.consume_partitions(log, &group, &topic, each).await?;
    let follower = delivery.clone();
    tasks.spawn(move |stop| follow_control(control, follower, faults, stop));
    let settled = delivery.settled();
    let pulse = Pulse {
        service: "connector",
        channel: Some(channel),
        processed: Box::new(move || settled.load(Ordering::Relaxed)),
        consumes: vec![(group, topic)],
    };
    Ok(pulse)
}

/// Applies the fault the operator put in the store, and reports the connector's state: at once when its breaker
/// or fault changes, at least every [`REPORT_EVERY`] otherwise.
async fn follow_control(
    control: Control,
    delivery: Delivery,
    faults: Arc<FaultSwitch>,
    stop: CancellationToken,
) {
    let channel = delivery.channel_name().to_owned();
    let mut reported: Option<(ConnectorReport, Instant)> = None;
    let mut tick = tokio::time::interval(CONTROL_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        apply_fault(&control, &channel, &faults).await;
        let report = ConnectorReport {
            channel: channel.clone(),
            circuit_breaker: delivery.breaker_state().as_str().to_owned(),
            pending: delivery.pending(),
            fault: faults.current().map(|f| f.name().to_owned()),
        };
        let due = reported.as_ref().is_none_or(|(last, at)| {
            (&last.circuit_breaker, &last.fault) != (&report.circuit_breaker, &report.fault)
                || at.elapsed() >= REPORT_EVERY
        });
        if due {
            match control.report(&report).await {
                Ok(()) => reported = Some((report, Instant::now())),
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot report the connector's state")
                }
            }
        }
    }
}

/// Puts the fault the store holds for `channel` (or none) into the channel's switch.
async fn apply_fault(control: &Control, channel: &str, faults: &FaultSwitch) {
    match control.fault::<Fault>(channel).await {
        Ok(Some((fault, until))) => {
            let left = Duration::from_millis(until.saturating_sub(now_millis()).max(0) as u64);
            faults.set(Some(fault), left);
        }
        Ok(None) => faults.set(None, Duration::ZERO),
        Err(e) => tracing::warn!(channel, error = %e, "cannot read the injected fault"),
    }
}
