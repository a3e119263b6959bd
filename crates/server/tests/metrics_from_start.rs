//! Every series of the documented metric list exists from start, at 0, so that dashboards and alerts read 0
//! rather than "no data", each with its help text (its own test binary: the metrics registry is per process).

mod common;

use common::spawn_app;

#[tokio::test]
async fn every_series_exists_at_zero_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let metrics = app
        .request(reqwest::Method::GET, "/metrics", None, None, &[])
        .await
        .text;
    for series in [
        r#"messages_accepted_total{service="api"} 0"#,
        r#"messages_rejected_total{service="api",reason="invalid"} 0"#,
        r#"messages_rejected_total{service="api",reason="too_large"} 0"#,
        r#"messages_rejected_total{service="api",reason="unavailable"} 0"#,
        r#"files_uploaded_total{service="api",size_bucket="gte_1gib"} 0"#,
        r#"group_membership_changes_total{service="api",change="handed_over"} 0"#,
        r#"login_attempts_throttled_total{service="api",scope="address"} 0"#,
        r#"http_connections_rejected_total{service="api"} 0"#,
        r#"http_requests_total{service="api",method="POST",path="/v1/messages",status="202"} 0"#,
        r#"http_request_duration_seconds_count{service="api",method="GET",path="/v1/conversations/{id}/messages"} 0"#,
        r#"event_log_append_duration_seconds_count{service="chat4all",backend="embedded"} 0"#,
        // The last partition of a new embedded log.
        r#"messages_consumed_total{service="router",topic="status-updates",partition="1"} 0"#,
        r#"processing_duration_seconds_count{service="router",topic="messages"} 0"#,
        r#"messages_processed_total{service="router",status="ROUTED"} 0"#,
        r#"messages_failed_total{service="router",reason="undecodable"} 0"#,
        r#"messages_failed_total{service="router",reason="unknown_channel"} 0"#,
        r#"messages_routed_via_identity_total{service="router",channel="whatsapp",identity="preferred"} 0"#,
        r#"messages_routed_via_identity_total{service="router",channel="instagram",identity="requested"} 0"#,
        r#"store_write_duration_seconds_count{service="chat4all",backend="sqlite"}"#,
        r#"messages_sent_total{service="connector",channel="whatsapp",status="FAILED"} 0"#,
        r#"messages_dead_lettered_total{service="connector",channel="instagram"} 0"#,
        r#"connector_api_duration_seconds_count{service="connector",channel="whatsapp"} 0"#,
        r#"circuit_breaker_transitions_total{service="connector",channel="whatsapp",from="CLOSED",to="OPEN"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|line| line.starts_with(series)),
            "missing at start: {series}"
        );
    }
    // Every family documents itself (what `promtool check metrics` requires): a HELP line per TYPE line.
    for family in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().unwrap_or_default();
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no help text: describe it in telemetry"
        );
    }
    app.stop().await;
}
