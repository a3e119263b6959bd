//! `chat4all admin heartbeats --log FILE`: which instances stopped sending heartbeats.

use anyhow::Context;
use chat4all_core::time::parse_rfc3339;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// Reads JSON log lines and reports every (service, channel, instance) whose last heartbeat is older than
/// `max_silence_secs` before `now` (seconds since the epoch). Returns the number of silent instances.
pub fn check(log: &Path, max_silence_secs: f64, now: f64) -> anyhow::Result<usize> {
    let file =
        std::fs::File::open(log).with_context(|| format!("cannot open {}", log.display()))?;
    let mut last: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["event"] != "heartbeat" {
            continue;
        }
        let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
        let Some(at) = entry["timestamp"].as_str().and_then(parse_rfc3339) else {
            continue;
        };
        let key = (text("service"), text("channel"), text("instance_id"));
        let seen = last.entry(key).or_insert(at);
        *seen = seen.max(at);
    }
    anyhow::ensure!(!last.is_empty(), "no heartbeat lines in {}", log.display());
    let mut silent = 0;
    for ((service, channel, instance), at) in &last {
        let age = now - at;
        let name = if channel.is_empty() {
            service.clone()
        } else {
            format!("{service}/{channel}")
        };
        if age > max_silence_secs {
            silent += 1;
            println!("SILENT  {name:<20} {instance:<30} last heartbeat {age:.0} s ago");
        } else {
            println!("ok      {name:<20} {instance:<30} last heartbeat {age:.0} s ago");
        }
    }
    Ok(silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_silent_instances() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.jsonl");
        let lines = [
            r#"{"event":"heartbeat","service":"router","instance_id":"a","timestamp":"2026-01-01T00:00:00Z"}"#,
            r#"{"event":"heartbeat","service":"router","instance_id":"a","timestamp":"2026-01-01T00:01:30Z"}"#,
            r#"{"event":"heartbeat","service":"connector","channel":"whatsapp","instance_id":"a","timestamp":"2026-01-01T00:00:10Z"}"#,
            r#"{"message":"not a heartbeat"}"#,
            "garbage",
        ];
        std::fs::write(&log, lines.join("\n")).unwrap();
        let now = parse_rfc3339("2026-01-01T00:02:00Z").unwrap();
        assert_eq!(
            check(&log, 60.0, now).unwrap(),
            1,
            "the connector went silent 110 s ago; the router 30 s ago"
        );
        assert_eq!(check(&log, 120.0, now).unwrap(), 0);
    }
}
