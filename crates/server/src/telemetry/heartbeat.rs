//! Heartbeats and consumer lag: every role logs a heartbeat line on a fixed interval, and the lag of every consumer
//! group is published as `kafka_consumer_lag{service,topic,partition,group}` (the service being the consuming
//! role) and kept for `/health`.

use chat4all_core::ports::EventLog;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often consumer lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// A role's vital signs.
pub struct Pulse {
    /// The role (`api`, `router`, `connector`).
    pub service: &'static str,
    /// Further identification, such as the connector's channel.
    pub channel: Option<String>,
    /// Work done since start (requests served, records consumed, messages settled).
    pub processed: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The consumer groups and topics whose lag is this role's.
    pub consumes: Vec<(String, String)>,
}

/// Lag per partition, by (group, topic).
type LagByConsumer = BTreeMap<(String, String), Vec<u64>>;

/// The latest lag per (group, topic), one entry per partition.
#[derive(Clone, Default)]
pub struct LagBoard(Arc<Mutex<LagByConsumer>>);

impl LagBoard {
    /// The largest lag of any partition of any group.
    pub fn max(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0)
    }

    fn total(&self, consumes: &[(String, String)]) -> u64 {
        let board = self.0.lock().unwrap_or_else(|p| p.into_inner());
        consumes
            .iter()
            .filter_map(|key| board.get(key))
            .flatten()
            .sum()
    }
}

/// Measures lag every few seconds and logs every pulse every `heartbeat`, until `stop`.
pub async fn run(
    log: Arc<dyn EventLog>,
    pulses: Vec<Pulse>,
    board: LagBoard,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
    let mut heartbeat_tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = lag_tick.tick() => measure_lag(&log, &pulses, &board).await,
            _ = heartbeat_tick.tick() => beat(&pulses, &board),
        }
    }
}

async fn measure_lag(log: &Arc<dyn EventLog>, pulses: &[Pulse], board: &LagBoard) {
    for pulse in pulses {
        for (group, topic) in &pulse.consumes {
            match log.lag(group, topic).await {
                Ok(lags) => {
                    for (partition, lag) in lags.iter().enumerate() {
                        metrics::gauge!(
                            "kafka_consumer_lag",
                            "service" => pulse.service,
                            "topic" => topic.clone(),
                            "partition" => partition.to_string(),
                            "group" => group.clone()
                        )
                        .set(*lag as f64);
                    }
                    board
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((group.clone(), topic.clone()), lags);
                }
                Err(e) => tracing::warn!(group, topic, error = %e, "cannot measure consumer lag"),
            }
        }
    }
}

fn beat(pulses: &[Pulse], board: &LagBoard) {
    let now = chat4all_core::time::now_millis() as f64 / 1000.0;
    for pulse in pulses {
        let channel = pulse.channel.clone().unwrap_or_default();
        metrics::gauge!("chat4all_heartbeat_timestamp_seconds", "service" => pulse.service, "channel" => channel).set(now);
        tracing::info!(
            event = "heartbeat",
            service = pulse.service,
            channel = pulse.channel.as_deref(),
            status = "UP",
            messages_processed = (pulse.processed)(),
            consumer_lag = board.total(&pulse.consumes),
            uptime_seconds = super::process::uptime_seconds().round() as u64,
            "heartbeat"
        );
    }
}
