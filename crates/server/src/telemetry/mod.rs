//! Logs (tracing, JSON lines or pretty) and metrics (a Prometheus registry shared by every role in the process).

pub mod heartbeat;
mod json_lines;
mod metered_log;
pub mod process;

pub use metered_log::MeteredLog;

use json_lines::JsonLines;
use tracing_subscriber::fmt::format::JsonFields;

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber; `RUST_LOG` refines the default `info` level. Lines are written by a
/// background thread so request handlers never wait on stdout; keep the returned guard until exit so that the
/// last lines are flushed. When the buffer is full, writers wait rather than drop lines.
pub fn init_logging(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines::new(instance_id().to_owned()))
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
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
