//! The capacity report: `capacity.md` (the knees, the efficiency ratio against a bare endpoint, a table per
//! target) and `capacity.svg` (p99 against the arrival rate).

use super::{CapacityOptions, Step, knee};
use crate::svg::{Series, line_chart};
use std::fmt::Write;

/// Writes `capacity.md` and `capacity.svg` into `dir`.
pub fn write_report(
    dir: &std::path::Path,
    options: &CapacityOptions,
    send: &[Step],
    bare: Option<&[Step]>,
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut md = format!(
        "# Capacity report\n\nOpen model, latency from the scheduled send time; SLO p99 ≤ {} ms, errors ≤ {:.1} %; steps of {} s, \
         after a warm-up of {} s at the first rate that is not counted.\n\n",
        options.slo_p99_ms,
        options.max_error_rate * 100.0,
        options.step_secs,
        options.warmup_secs
    );
    let send_knee = knee(send, options);
    let _ = writeln!(
        md,
        "**Knee (POST /v1/messages): {}**\n",
        send_knee.map_or("below the first step".into(), |k| format!("{k} msg/s"))
    );
    if let Some(bare) = bare {
        let bare_knee = knee(bare, options);
        let _ = writeln!(
            md,
            "Bare endpoint (GET /health/live) knee: {}",
            bare_knee.map_or("below the first step".into(), |k| format!("{k} req/s"))
        );
        if let (Some(s), Some(b)) = (send_knee, bare_knee) {
            let _ = writeln!(
                md,
                "\n**Efficiency ratio (send knee / bare knee): {:.2}**\n",
                f64::from(s) / f64::from(b)
            );
        }
    }
    for (name, steps) in [
        ("POST /v1/messages", Some(send)),
        ("GET /health/live", bare),
    ] {
        let Some(steps) = steps else { continue };
        let _ = writeln!(
            md,
            "\n## {name}\n\n| rate/s | sent | p50 ms | p95 ms | p99 ms | errors | e2e p95 ms |\n|---|---|---|---|---|---|---|"
        );
        for s in steps {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} %{} | {} |",
                s.rate,
                s.sent,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.error_rate() * 100.0,
                if s.failures.total() > 0 {
                    format!(" ({})", s.failures)
                } else {
                    String::new()
                },
                s.e2e_p95_ms.map_or("-".into(), |e| format!("{e:.0}"))
            );
        }
    }
    let _ = writeln!(md, "\n![p99 against the arrival rate](capacity.svg)");
    let series = |name, steps: &[Step]| Series {
        name,
        points: steps
            .iter()
            .map(|s| (f64::from(s.rate), s.p99_ms))
            .collect(),
    };
    let mut chart = vec![series("send p99", send)];
    if let Some(bare) = bare {
        chart.push(series("bare p99", bare));
    }
    std::fs::write(
        dir.join("capacity.svg"),
        line_chart(
            "p99 latency against arrival rate",
            "requests/s",
            "ms",
            &chart,
        ),
    )?;
    let path = dir.join("capacity.md");
    std::fs::write(&path, md)?;
    Ok(path)
}
