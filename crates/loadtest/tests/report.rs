//! The k6 parser and the report on a committed fixture: a few requests of a real quick run, plus a 500 and a
//! request that got no answer, and a summary whose error-rate threshold was crossed.

use chat4all_loadtest::k6;
use chat4all_loadtest::report::{RunReport, write_summary};
use std::path::Path;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("01-warmup-fixture");
    std::fs::create_dir(&run).unwrap();
    for file in ["points.json", "summary.json"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/quick-run")
                .join(file),
            run.join(file),
        )
        .unwrap();
    }
    dir
}

#[test]
fn parses_points_and_thresholds() {
    let dir = fixture();
    let run = dir.path().join("01-warmup-fixture");
    let points = k6::read_points(&run.join("points.json")).unwrap();
    assert!(points.pushes.is_empty(), "an HTTP-only run pushes nothing");
    let requests = points.requests;
    assert_eq!(requests.len(), 22);
    assert_eq!(requests.iter().filter(|r| r.setup).count(), 2);
    assert_eq!(requests[0].endpoint, "register");
    assert!(requests[0].time > 1.7e9);
    let thresholds = k6::read_thresholds(&run.join("summary.json")).unwrap();
    let failed: Vec<_> = thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.metric.as_str())
        .collect();
    assert_eq!(failed, ["http_req_failed"]);
    assert_eq!(k6::max_vus(&run.join("summary.json")), Some(5));
}

#[test]
fn reports_percentiles_errors_and_thresholds() {
    let dir = fixture();
    let run = RunReport::analyze(&dir.path().join("01-warmup-fixture")).unwrap();
    assert_eq!((run.requests, run.failed, run.messages), (20, 2, 18));
    let send = run.endpoints["send"];
    assert_eq!(send.count, 20);
    assert_eq!(send.p50, 9.386_607); // nearest rank: the 10th of 20 sorted samples
    assert_eq!(send.p95, 32.400_26); // the 19th
    assert_eq!(send.max, 250.0);
    assert_eq!(run.statuses.get(&500), Some(&1));
    assert_eq!(run.statuses.get(&0), Some(&1));
    assert!((run.error_rate() - 0.1).abs() < 1e-9);
    assert!(!run.passed());

    let report = std::fs::read_to_string(run.write().unwrap()).unwrap();
    assert!(report.contains("| send | 20 |"), "{report}");
    assert!(report.contains("| http_req_failed | `rate<0.01` | FAILED |"));
    for chart in [
        "latency-over-time.svg",
        "requests-per-second.svg",
        "latency-distribution.svg",
    ] {
        let svg = std::fs::read_to_string(run.dir.join(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}"
        );
    }
    let summary = std::fs::read_to_string(write_summary(dir.path(), &[run]).unwrap()).unwrap();
    assert!(summary.contains("[01-warmup-fixture](01-warmup-fixture/report.md)"));
    assert!(summary.contains("FAILED"));
}

#[test]
fn a_real_time_run_reports_its_push_times_and_lost_notifications() {
    let dir = fixture();
    let run = dir.path().join("01-warmup-fixture");
    let point = |metric: &str, value: f64| {
        format!(
            r#"{{"metric":"{metric}","type":"Point","data":{{"time":"2026-12-02T01:15:50.000Z","value":{value},"tags":{{"scenario":"listeners"}}}}}}"#
        )
    };
    let mut points = std::fs::read_to_string(run.join("points.json")).unwrap();
    for value in [3.0, 4.0, 9.0, 17.0] {
        points.push_str(&point("ws_delivery_ms", value));
        points.push('\n');
    }
    std::fs::write(run.join("points.json"), points).unwrap();
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    summary["metrics"]["ws_notifications_lost"] = serde_json::json!({"count": 2, "rate": 0.1});
    std::fs::write(run.join("summary.json"), summary.to_string()).unwrap();

    let report = RunReport::analyze(&run).unwrap();
    let push = report.push.as_ref().expect("push times");
    assert_eq!((push.count, push.max), (4, 17.0));
    assert_eq!(report.lost, Some(2));
    assert_eq!(report.requests, 20, "pushes are not requests");
    let markdown = std::fs::read_to_string(report.write().unwrap()).unwrap();
    assert!(markdown.contains("## Real-time push"), "{markdown}");
}
