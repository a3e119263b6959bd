//! Process metrics read from `/proc` at scrape time (in the exposition format, with their proper types), and the
//! build info series.

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn started() -> &'static (Instant, f64) {
    static STARTED: OnceLock<(Instant, f64)> = OnceLock::new();
    STARTED.get_or_init(|| {
        (
            Instant::now(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        )
    })
}

/// Notes the process start (call early) and publishes the build info series.
pub fn init(mode: &'static str) {
    started();
    metrics::gauge!(
        "chat4all_build_info",
        "service" => "chat4all",
        "version" => env!("CARGO_PKG_VERSION"),
        "git_sha" => env!("CHAT4ALL_GIT_SHA"),
        "mode" => mode
    )
    .set(1.0);
}

/// Seconds since the process started.
pub fn uptime_seconds() -> f64 {
    started().0.elapsed().as_secs_f64()
}

/// The process metrics, to append to the registry's exposition.
pub fn exposition() -> String {
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{service=\"chat4all\"}} {value}"
        );
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at the closing parenthesis; utime and
        // stime are then the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        series(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent.",
            (ticks(11) + ticks(12)) / TICKS_PER_SECOND,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    if let Some(kib) = rss_kib {
        series(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size.",
            kib * 1024.0,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        series(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count() as f64,
        );
    }
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch.",
        started().1,
    );
    series(
        "process_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
        uptime_seconds(),
    );
    out
}
