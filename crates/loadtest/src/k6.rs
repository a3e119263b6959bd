//! Reading k6's outputs: the NDJSON points of `--out json=…` (gzipped when the name ends in `.gz`) and the
//! `--summary-export` file.

use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One HTTP request as k6 recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Seconds since the epoch.
    pub time: f64,
    /// Duration (ms).
    pub duration_ms: f64,
    /// The `endpoint` tag, else method and URL.
    pub endpoint: String,
    /// HTTP status (0 when the request did not complete).
    pub status: u16,
    /// Whether it ran in `setup()` rather than the load itself.
    pub setup: bool,
}

/// A threshold and whether it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// Metric (with its tag filter).
    pub metric: String,
    /// Condition, such as `p(95)<200`.
    pub condition: String,
    /// Whether it held.
    pub passed: bool,
}

/// What a run's points hold: its HTTP requests and, for real-time scenarios, each pushed message's
/// accept-to-socket time (ms, the `ws_delivery_ms` trend).
#[derive(Debug, Default)]
pub struct Points {
    /// The HTTP requests.
    pub requests: Vec<Request>,
    /// Accept-to-socket times of pushed messages.
    pub pushes: Vec<f64>,
}

/// The trend real-time scenarios record for each pushed message.
const PUSH_METRIC: &str = "ws_delivery_ms";

/// The requests and push times of a points file.
pub fn read_points(path: &Path) -> anyhow::Result<Points> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut points = Points::default();
    let push = format!("\"metric\":\"{PUSH_METRIC}\"");
    for (number, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        // Only request durations and push times matter; skip the rest cheaply before parsing.
        let is_push = line.contains(&push);
        if !(is_push || line.contains("\"metric\":\"http_req_duration\""))
            || !line.contains("\"type\":\"Point\"")
        {
            continue;
        }
        let point: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), number + 1))?;
        let data = &point["data"];
        if is_push {
            points.pushes.extend(data["value"].as_f64());
            continue;
        }
        let tags = &data["tags"];
        let tag = |name: &str| tags[name].as_str().unwrap_or_default();
        let endpoint = if tag("endpoint").is_empty() {
            format!("{} {}", tag("method"), tag("name"))
        } else {
            tag("endpoint").to_owned()
        };
        points.requests.push(Request {
            time: data["time"]
                .as_str()
                .and_then(chat4all_core::time::parse_rfc3339)
                .unwrap_or_default(),
            duration_ms: data["value"].as_f64().unwrap_or_default(),
            endpoint,
            status: tag("status").parse().unwrap_or(0),
            setup: tag("group") == "::setup",
        });
    }
    Ok(points)
}

/// The thresholds of a summary export (k6 marks a threshold `true` when it was crossed).
pub fn read_thresholds(path: &Path) -> anyhow::Result<Vec<Threshold>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let summary: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let mut thresholds = Vec::new();
    let metrics = summary["metrics"]
        .as_object()
        .map(|m| m.iter().collect::<BTreeMap<_, _>>())
        .unwrap_or_default();
    for (metric, values) in metrics {
        for (condition, crossed) in values["thresholds"].as_object().into_iter().flatten() {
            thresholds.push(Threshold {
                metric: metric.clone(),
                condition: condition.clone(),
                passed: crossed == false,
            });
        }
    }
    Ok(thresholds)
}

/// The value of a counter in a summary export (`ws_notifications_lost`), when the run recorded it.
pub fn counter(path: &Path, metric: &str) -> Option<u64> {
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let counter = &summary["metrics"][metric];
    counter["count"]
        .as_f64()
        .or(counter["values"]["count"].as_f64())
        .map(|v| v as u64)
}

/// The largest number of VUs the summary saw.
pub fn max_vus(path: &Path) -> Option<u64> {
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    summary["metrics"]["vus_max"]["max"]
        .as_f64()
        .or(summary["metrics"]["vus_max"]["value"].as_f64())
        .map(|v| v as u64)
}
