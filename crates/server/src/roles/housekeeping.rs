//! The housekeeping role: every role's heartbeat line, the consumer lag that `/health` and the
//! `kafka_consumer_lag` series report, and the metrics registry's upkeep.

use super::{Backends, Tasks};
use crate::telemetry::{
    self,
    heartbeat::{self, LagBoard, Pulse},
};
use std::time::Duration;

/// Starts the heartbeats of `pulses` every `interval`, lag measurement into `lag`, and histogram upkeep.
pub fn start(
    tasks: &Tasks,
    backends: &Backends,
    pulses: Vec<Pulse>,
    lag: LagBoard,
    interval: Duration,
) {
    let log = backends.log.clone();
    tasks.spawn(move |stop| heartbeat::run(log, pulses, lag, interval, stop));
    tasks.spawn(telemetry::fold_histograms);
}
