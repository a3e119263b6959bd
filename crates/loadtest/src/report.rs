//! One run's report (Markdown and SVG charts) and the comparison of many runs.

use crate::k6::{self, Request, Threshold};
use crate::stats::{Latency, percentile};
use crate::svg::{Series, bar_chart, line_chart};
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Latency buckets of the distribution chart (upper bounds, ms).
const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// What one k6 run measured.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run's folder name (`02-baseline-20261122T…`).
    pub name: String,
    /// The run's folder.
    pub dir: PathBuf,
    /// Seconds from the first to the last request of the load (setup excluded).
    pub duration_s: f64,
    /// Most VUs.
    pub vus: Option<u64>,
    /// Requests of the load.
    pub requests: usize,
    /// Requests that failed (no answer, or 4xx/5xx).
    pub failed: usize,
    /// Messages accepted (202 to the `send` endpoint).
    pub messages: usize,
    /// Latency per endpoint.
    pub endpoints: BTreeMap<String, Latency>,
    /// Responses per status.
    pub statuses: BTreeMap<u16, usize>,
    /// The run's thresholds.
    pub thresholds: Vec<Threshold>,
    /// Per second: (t, requests, p50, p95, p99).
    pub timeline: Vec<(f64, f64, f64, f64, f64)>,
    /// Requests per latency bucket.
    pub distribution: Vec<(String, f64)>,
    /// Real-time scenarios: accept-to-socket time of the pushed messages.
    pub push: Option<Latency>,
    /// Real-time scenarios: messages stored but never pushed to their listener.
    pub lost: Option<u64>,
}

impl RunReport {
    /// Reads a result folder written by `scripts/load-tests/run.sh` (`points.json[.gz]`, `summary.json`).
    pub fn analyze(dir: &Path) -> anyhow::Result<Self> {
        let points = ["points.json.gz", "points.json"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
            .with_context(|| format!("{} has no points.json(.gz)", dir.display()))?;
        let k6::Points {
            requests,
            mut pushes,
        } = k6::read_points(&points)?;
        let requests: Vec<Request> = requests.into_iter().filter(|r| !r.setup).collect();
        anyhow::ensure!(
            !requests.is_empty(),
            "{} holds no request of the load",
            points.display()
        );
        let summary = dir.join("summary.json");
        let thresholds = if summary.exists() {
            k6::read_thresholds(&summary)?
        } else {
            Vec::new()
        };
        let start = requests
            .iter()
            .map(|r| r.time)
            .fold(f64::INFINITY, f64::min);
        let end = requests.iter().map(|r| r.time).fold(0.0, f64::max);
        let mut by_endpoint: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut by_second: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        let mut statuses = BTreeMap::new();
        let mut distribution = vec![0.0; BUCKETS_MS.len() + 1];
        for r in &requests {
            by_endpoint
                .entry(r.endpoint.clone())
                .or_default()
                .push(r.duration_ms);
            by_second
                .entry((r.time - start) as u64)
                .or_default()
                .push(r.duration_ms);
            *statuses.entry(r.status).or_insert(0) += 1;
            distribution[BUCKETS_MS
                .iter()
                .position(|b| r.duration_ms <= *b)
                .unwrap_or(BUCKETS_MS.len())] += 1.0;
        }
        let timeline = by_second
            .into_iter()
            .map(|(second, mut samples)| {
                samples.sort_by(f64::total_cmp);
                let at = |p| percentile(&samples, p).unwrap_or_default();
                (
                    second as f64,
                    samples.len() as f64,
                    at(50.0),
                    at(95.0),
                    at(99.0),
                )
            })
            .collect();
        let labels = BUCKETS_MS
            .iter()
            .map(|b| format!("≤{b}"))
            .chain([format!(">{}", BUCKETS_MS[BUCKETS_MS.len() - 1])]);
        Ok(Self {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_owned(),
            duration_s: (end - start).max(1e-3),
            vus: if summary.exists() {
                k6::max_vus(&summary)
            } else {
                None
            },
            failed: requests
                .iter()
                .filter(|r| r.status == 0 || r.status >= 400)
                .count(),
            messages: requests
                .iter()
                .filter(|r| r.endpoint == "send" && r.status == 202)
                .count(),
            requests: requests.len(),
            endpoints: by_endpoint
                .into_iter()
                .filter_map(|(e, mut s)| Latency::of(&mut s).map(|l| (e, l)))
                .collect(),
            statuses,
            thresholds,
            timeline,
            distribution: labels.zip(distribution).collect(),
            push: Latency::of(&mut pushes),
            lost: k6::counter(&summary, "ws_notifications_lost"),
        })
    }

    /// Whether every threshold held.
    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }

    /// Messages accepted per second.
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.duration_s
    }

    /// Share of requests that failed.
    pub fn error_rate(&self) -> f64 {
        self.failed as f64 / self.requests.max(1) as f64
    }

    /// Writes `report.md` and its three charts into the run's folder; returns the report's path.
    pub fn write(&self) -> anyhow::Result<PathBuf> {
        let series = |name, pick: fn(&(f64, f64, f64, f64, f64)) -> f64| Series {
            name,
            points: self.timeline.iter().map(|p| (p.0, pick(p))).collect(),
        };
        let charts = [
            (
                "latency-over-time.svg",
                line_chart(
                    "Latency percentiles over time",
                    "seconds",
                    "ms",
                    &[
                        series("p50", |p| p.2),
                        series("p95", |p| p.3),
                        series("p99", |p| p.4),
                    ],
                ),
            ),
            (
                "requests-per-second.svg",
                line_chart(
                    "Requests per second",
                    "seconds",
                    "requests/s",
                    &[series("requests/s", |p| p.1)],
                ),
            ),
            (
                "latency-distribution.svg",
                bar_chart("Latency distribution", "ms", "requests", &self.distribution),
            ),
        ];
        for (file, svg) in &charts {
            std::fs::write(self.dir.join(file), svg)?;
        }
        let path = self.dir.join("report.md");
        std::fs::write(&path, self.markdown())?;
        Ok(path)
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Load test report: {}\n", self.name);
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| duration | {:.1} s |", self.duration_s);
        let _ = writeln!(
            md,
            "| VUs (max) | {} |",
            self.vus.map_or("-".into(), |v| v.to_string())
        );
        let _ = writeln!(
            md,
            "| requests | {} ({:.1}/s) |",
            self.requests,
            self.requests as f64 / self.duration_s
        );
        let _ = writeln!(
            md,
            "| messages accepted | {} ({:.1}/s, {:.0}/min) |",
            self.messages,
            self.messages_per_second(),
            self.messages_per_second() * 60.0
        );
        let _ = writeln!(md, "| error rate | {:.3} % |", self.error_rate() * 100.0);
        let _ = writeln!(
            md,
            "| thresholds | {} |\n",
            if self.passed() {
                "all passed"
            } else {
                "FAILED"
            }
        );
        let _ = writeln!(
            md,
            "## Latency per endpoint (ms)\n\n| endpoint | count | avg | p50 | p90 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|"
        );
        for (endpoint, l) in &self.endpoints {
            let _ = writeln!(
                md,
                "| {endpoint} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                l.count, l.avg, l.p50, l.p90, l.p95, l.p99, l.max
            );
        }
        if let Some(p) = &self.push {
            let _ = writeln!(
                md,
                "\n## Real-time push (accept → socket, ms)\n\n| pushed | lost | avg | p50 | p90 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                p.count,
                self.lost.map_or("-".into(), |l| l.to_string()),
                p.avg,
                p.p50,
                p.p90,
                p.p95,
                p.p99,
                p.max
            );
        }
        let _ = writeln!(
            md,
            "\n## Responses by status\n\n| status | count | share |\n|---|---|---|"
        );
        for (status, count) in &self.statuses {
            let label = if *status == 0 {
                "no answer".to_owned()
            } else {
                status.to_string()
            };
            let _ = writeln!(
                md,
                "| {label} | {count} | {:.2} % |",
                *count as f64 * 100.0 / self.requests.max(1) as f64
            );
        }
        let _ = writeln!(
            md,
            "\n## Thresholds\n\n| metric | condition | result |\n|---|---|---|"
        );
        for t in &self.thresholds {
            let _ = writeln!(
                md,
                "| {} | `{}` | {} |",
                t.metric,
                t.condition,
                if t.passed { "passed" } else { "FAILED" }
            );
        }
        let _ = writeln!(
            md,
            "\n## Charts\n\n![latency percentiles over time](latency-over-time.svg)\n\n![requests per second](requests-per-second.svg)\n\n![latency distribution](latency-distribution.svg)"
        );
        md
    }
}

/// Writes `SUMMARY.md` comparing `runs` into `dir`; returns its path.
pub fn write_summary(dir: &Path, runs: &[RunReport]) -> anyhow::Result<PathBuf> {
    let mut md = String::from(
        "# Load test summary\n\n| run | duration | VUs | messages/s | messages/min | send p50 | send p95 | send p99 | errors | thresholds |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let send = run.endpoints.get("send");
        let ms =
            |pick: fn(&Latency) -> f64| send.map_or("-".into(), |l| format!("{:.2} ms", pick(l)));
        let _ = writeln!(
            md,
            "| [{}]({}/report.md) | {:.0} s | {} | {:.1} | {:.0} | {} | {} | {} | {:.3} % | {} |",
            run.name,
            run.name,
            run.duration_s,
            run.vus.map_or("-".into(), |v| v.to_string()),
            run.messages_per_second(),
            run.messages_per_second() * 60.0,
            ms(|l| l.p50),
            ms(|l| l.p95),
            ms(|l| l.p99),
            run.error_rate() * 100.0,
            if run.passed() { "passed" } else { "FAILED" }
        );
    }
    let path = dir.join("SUMMARY.md");
    std::fs::write(&path, md)?;
    Ok(path)
}
