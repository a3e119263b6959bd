//! The housekeeping role: every role's heartbeat line, and the consumer lag that `/health` and the
//! `kafka_consumer_lag` series report.

use super::{Backends, Tasks};
use crate::telemetry::heartbeat::{self, LagBoard, Pulse};
use std::time::Duration;

/// Starts the heartbeats of `pulses` every `interval`, and lag measurement into `lag`.
pub fn start(
    tasks: &Tasks,
    backends: &Backends,
    pulses: Vec<Pulse>,
    lag: LagBoard,
    interval: Duration,
) {
    let log = backends.log.clone();
    tasks.spawn(move |stop| heartbeat::run(log, pulses, lag, interval, stop));
}
