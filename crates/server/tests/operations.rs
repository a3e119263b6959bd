//! End to end, against the real server on port 0: the server as a process: health, metrics, the OpenAPI
//! document and correlation ids, which connectors start, restarts, and one process per data directory.

mod common;

use chat4all_server::app::CheckDepth;
use chat4all_server::{Application, Role};
use common::{all_have_status, spawn_app, spawn_edited};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn everything_survives_a_restart_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    for i in 1..=3 {
        assert_eq!(
            app.send(
                &alice,
                json!({"conversation_id": "c1", "content": format!("m{i}")})
            )
            .await
            .status,
            202
        );
    }
    app.wait_for_history(&alice, "c1", |m| all_have_status(m, 3, "DELIVERED"))
        .await;
    app.stop().await;

    let app = spawn_app(dir.path()).await;
    let token = app
        .post(
            "/auth/token",
            None,
            &json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(token.status, 200, "users survive");
    assert_eq!(
        app.get("/v1/conversations", &alice).await.status,
        200,
        "tokens survive: the secret is the same"
    );
    app.send(&alice, json!({"conversation_id": "c1", "content": "m4"}))
        .await;
    let messages = app
        .wait_for_history(&alice, "c1", |m| all_have_status(m, 4, "DELIVERED"))
        .await;
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(messages[3]["content"], "m4");
    app.stop().await;
}

#[tokio::test]
async fn the_channel_map_decides_which_connectors_start() {
    let (_dir, app) = spawn_edited(|c| {
        c.channels.remove("instagram");
    })
    .await;
    let report = app
        .request(Method::GET, "/health", None, None, &[])
        .await
        .json();
    let components = report["components"].as_object().unwrap();
    assert!(components.contains_key("connector_whatsapp"), "{report}");
    assert!(!components.contains_key("connector_instagram"), "{report}");
    app.stop().await;
}

#[tokio::test]
async fn operations_endpoints_and_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let health = app
        .request(
            Method::GET,
            "/health",
            None,
            None,
            &[("x-correlation-id", "probe-1")],
        )
        .await;
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["x-correlation-id"], "probe-1");
    let report = health.json();
    assert_eq!(report["status"], "UP");
    assert_eq!(report["components"]["store"]["status"], "UP");
    assert_eq!(report["components"]["event_log"]["status"], "UP");
    let insane = app
        .request(
            Method::GET,
            "/health/live",
            None,
            None,
            &[("x-correlation-id", "bad id!")],
        )
        .await;
    assert_eq!(insane.status, 200);
    assert_ne!(insane.headers["x-correlation-id"], "bad id!");

    let metrics = app.request(Method::GET, "/metrics", None, None, &[]).await;
    assert!(
        metrics.text.contains("http_requests_total"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("path=\"/health\""));

    let doc = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/auth/register",
        "/auth/token",
        "/v1/messages",
        "/v1/conversations/{id}/messages",
        "/v1/messages/{id}/read",
        "/health",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_data_directory_serves_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let second = Application::build(common::test_config(dir.path()), Role::All).await;
    let error = second
        .err()
        .expect("a second process on the same data dir is refused")
        .to_string();
    assert!(
        error.contains("in use by another chat4all process"),
        "{error}"
    );
    app.stop().await;
    let again = spawn_app(dir.path()).await;
    again.stop().await;
}

#[tokio::test]
async fn role_processes_refuse_embedded_backends_and_unknown_channels() {
    let dir = tempfile::tempdir().unwrap();
    for role in [Role::Api, Role::Router, Role::Connector("whatsapp".into())] {
        let error = Application::build(common::test_config(dir.path()), role.clone())
            .await
            .err()
            .expect("a role process on embedded storage is refused")
            .to_string();
        assert!(
            error.contains("belongs to one process") && error.contains("chat4all serve"),
            "{role:?}: {error}"
        );
    }
    let config = common::test_config(dir.path());
    let error = chat4all_server::app::check(
        &config,
        &Role::Connector("telegram".into()),
        CheckDepth::Offline,
    )
    .await
    .expect_err("an unconfigured channel is refused");
    let error = error.to_string();
    assert!(
        error.contains("\"telegram\"") && error.contains("whatsapp"),
        "the error names the channel and the configured ones: {error}"
    );
    assert!(
        !dir.path().join("events").exists(),
        "a refused role opens nothing"
    );
}
