//! Logs (tracing, JSON lines or pretty) and metrics (a Prometheus registry shared by every role in the process).

pub mod heartbeat;
mod json_lines;
mod log_output;
mod metered_log;
pub mod process;

pub use metered_log::MeteredLog;

#[cfg(test)]
pub(crate) use json_lines::tests::CapturedLog;

use json_lines::JsonLines;
use tracing_subscriber::fmt::format::JsonFields;

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber; `RUST_LOG` refines the default `info` level. Lines are written by a
/// background thread so request handlers never wait on stdout; keep the returned guard until exit so that the
/// last lines are flushed. When the buffer is full, writers wait rather than drop lines. The thread writes all the
/// lines waiting for it at once (it flushes whenever none is left, at most every 10 ms), not one system call per
/// line, and paces the disk writes of a log file (`log_output`).
pub fn init_logging(format: LogFormat, process: &'static str) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(log_output::LogOutput::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines::new(instance_id().to_owned(), process))
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    guard
}

/// This process's id in logs, metrics and heartbeats: host name and process id.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let host = if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        format!("{host}-{}", std::process::id())
    })
}

/// Latency buckets (seconds) that resolve both the fast paths (from 0.5 ms) and slow channel calls (to 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// The process-wide Prometheus registry, installed on first use (tests build many apps in one process).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// How often recorded histogram samples are folded into their buckets. The recorder keeps each sample until then
/// (or until a scrape), so a process nobody scrapes would grow by every observation: 8 MiB a minute at 1,700
/// messages/s.
const HISTOGRAM_UPKEEP: Duration = Duration::from_secs(5);

/// Folds the registry's recorded histogram samples into their buckets every few seconds, until `stop`.
pub async fn fold_histograms(stop: CancellationToken) {
    let registry = metrics();
    let mut tick = tokio::time::interval(HISTOGRAM_UPKEEP);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => registry.run_upkeep(),
        }
    }
}

/// Help texts of every series, so that the exposition documents itself (and passes `promtool check metrics`).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route template."
    );
    describe_gauge!("http_connections_open", "HTTP connections open now.");
    describe_gauge!(
        "websocket_connections",
        "Real-time sockets open on this instance."
    );
    describe_counter!(
        "group_membership_changes_total",
        "Group membership changes, by change (joined, left, removed, promoted, handed_over)."
    );
    describe_counter!(
        "messages_routed_via_identity_total",
        "Messages handed to a channel through a user's identity, by channel and identity (preferred, requested)."
    );
    describe_counter!(
        "websocket_notifications_sent_total",
        "Frames queued to real-time sockets."
    );
    describe_counter!(
        "websocket_notifications_dropped_total",
        "Frames a slow socket could not take; the socket is then closed."
    );
    describe_counter!(
        "websocket_closed_total",
        "Real-time sockets the server closed, by reason."
    );
    describe_histogram!(
        "websocket_notification_delay_seconds",
        Unit::Seconds,
        "From a change's publication (after the store's commit) to its frame being queued to a socket."
    );
    describe_counter!(
        "http_connections_rejected_total",
        "HTTP connections refused (503) over the connection cap."
    );
    describe_counter!(
        "login_attempts_throttled_total",
        "Logins refused with 429 after too many failures, by scope (username, address)."
    );
    describe_counter!(
        "messages_accepted_total",
        "Messages accepted (durably appended, answered 202)."
    );
    describe_counter!(
        "messages_rejected_total",
        "Messages refused by the api, by reason."
    );
    describe_counter!("files_uploaded_total", "Files stored, by size bucket.");
    describe_histogram!(
        "event_log_append_duration_seconds",
        Unit::Seconds,
        "Time for an append to the event log to become durable, by backend."
    );
    describe_counter!(
        "messages_consumed_total",
        "Records consumed by the router, by topic and partition."
    );
    describe_counter!(
        "messages_processed_total",
        "Messages routed or moved to a new status by the router, by status."
    );
    describe_counter!(
        "messages_failed_total",
        "Messages the router failed or dead-lettered, by reason."
    );
    describe_counter!(
        "consumer_rebalances_total",
        "Partitions assigned to or revoked from this process's group members, by consumer and change (events)."
    );
    describe_gauge!(
        "consumer_partitions_owned",
        "Partitions this process's group member owns now, by consumer (group/topic)."
    );
    describe_gauge!(
        "kafka_consumer_lag",
        "Records not yet committed by a consumer group, per topic and partition."
    );
    describe_histogram!(
        "processing_duration_seconds",
        Unit::Seconds,
        "Time the router takes per batch."
    );
    describe_histogram!(
        "store_write_duration_seconds",
        Unit::Seconds,
        "Time of a store write transaction, by backend."
    );
    describe_counter!(
        "messages_sent_total",
        "Messages settled by a connector, by channel and status."
    );
    describe_histogram!(
        "connector_api_duration_seconds",
        Unit::Seconds,
        "Latency of channel calls, by channel."
    );
    describe_gauge!(
        "circuit_breaker_state",
        "Circuit breaker per channel: 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        "circuit_breaker_transitions_total",
        "Circuit breaker transitions, by channel, from and to."
    );
    describe_gauge!(
        "messages_pending",
        "Messages parked as PENDING per channel in this process."
    );
    describe_counter!(
        "messages_dead_lettered_total",
        "Messages and records sent to dead letters by connectors, by channel."
    );
    describe_gauge!(
        "chat4all_heartbeat_timestamp_seconds",
        "When each role last logged its heartbeat (seconds since the epoch)."
    );
    describe_gauge!(
        "chat4all_build_info",
        "Build of this process: version, git sha, mode (always 1)."
    );
}
