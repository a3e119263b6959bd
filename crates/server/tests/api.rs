//! End-to-end tests of the HTTP contract against the real server on port 0.

mod common;

use common::{all_have_status, spawn_app, spawn_edited};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn register_login_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let created = app
        .post(
            "/auth/register",
            None,
            &json!({"username": "alice", "password": "s3cret-pass", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = created.json();
    assert_eq!(user["username"], "alice");
    assert!(!created.text.contains("s3cret-pass"));

    let duplicate = app
        .post(
            "/auth/register",
            None,
            &json!({"username": "alice", "password": "another-pass"}),
        )
        .await;
    assert_eq!(duplicate.status, 409);
    let same_email = app
        .post(
            "/auth/register",
            None,
            &json!({"username": "alice2", "password": "another-pass", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(same_email.status, 409);
    for bad in [
        json!({"username": "al", "password": "long-enough"}),
        json!({"username": "alice3", "password": "short"}),
        json!({"username": "alice4", "password": "long-enough", "email": "nope"}),
        json!({"username": 5, "password": "x"}),
    ] {
        let reply = app.post("/auth/register", None, &bad).await;
        assert_eq!(reply.status, 400, "{bad} -> {}", reply.text);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
    }

    let token = app
        .post(
            "/auth/token",
            None,
            &json!({"username": "alice", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(token.status, 200);
    let token = token.json();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    assert_eq!(token["user_id"], user["user_id"]);

    let wrong = app
        .post(
            "/auth/token",
            None,
            &json!({"username": "alice", "password": "wrong-pass"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/token",
            None,
            &json!({"username": "nobody", "password": "wrong-pass"}),
        )
        .await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.json()["detail"], unknown.json()["detail"]);
    app.stop().await;
}

#[tokio::test]
async fn messages_are_accepted_routed_and_listed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;

    let accepted = app
        .send(
            &alice,
            json!({"conversation_id": "c1", "content": "hello", "recipient_id": bob_id}),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert!(
        accepted.text.contains("\"message_id\":\""),
        "compact JSON expected: {}",
        accepted.text
    );
    assert_eq!(accepted.json()["status"], "ACCEPTED");

    for i in 2..=200 {
        let reply = app
            .send(
                &alice,
                json!({"conversation_id": "c1", "content": format!("message {i}")}),
            )
            .await;
        assert_eq!(reply.status, 202, "{}", reply.text);
    }
    app.wait_for_page(&bob, "c1", "order=desc&limit=1", |m| {
        m.len() == 1 && m[0]["seq"] == 200 && m[0]["status"] == "DELIVERED"
    })
    .await;
    let messages = app
        .wait_for_history(&bob, "c1", |m| all_have_status(m, 100, "DELIVERED"))
        .await;
    assert_eq!(messages[0]["content"], "hello");
    assert_eq!(messages[0]["recipient_id"], bob_id.as_str());
    assert!(messages[0]["delivered_at"].is_i64());

    // Every page, forward and backward, in seq order with no gap.
    let mut seen: Vec<u64> = Vec::new();
    let mut cursor = 0;
    loop {
        let page = app
            .history(&alice, "c1", &format!("limit=100&after={cursor}"))
            .await
            .json();
        let seqs: Vec<u64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        seen.extend(&seqs);
        if !page["pagination"]["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = page["pagination"]["next_cursor"].as_u64().unwrap();
    }
    assert_eq!(seen, (1..=200).collect::<Vec<u64>>());
    let last = app.history(&alice, "c1", "order=desc&limit=1").await.json();
    assert_eq!(last["messages"][0]["seq"], 200);
    assert_eq!(last["messages"][0]["content"], "message 200");
    let offset = app
        .history(&alice, "c1", "limit=10&offset=190")
        .await
        .json();
    assert_eq!(offset["messages"][0]["seq"], 191);
    assert_eq!(offset["pagination"]["returned"], 10);
    assert_eq!(offset["pagination"]["has_more"], false);

    for bad in [
        "limit=0",
        "limit=101",
        "order=sideways",
        "after=-1",
        "after=9223372036854775808",
        "limit=abc",
    ] {
        assert_eq!(app.history(&alice, "c1", bad).await.status, 400, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn membership_and_sender_rules() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, _) = app.user("bob").await;
    let (_, carol) = app.user("carol").await;
    assert_eq!(
        app.send(
            &alice,
            json!({"conversation_id": "c1", "content": "hi", "recipient_id": bob_id})
        )
        .await
        .status,
        202
    );

    let refused = app.history(&carol, "c1", "").await;
    assert_eq!(refused.status, 403);
    assert!(
        !refused.json()["detail"].as_str().unwrap().contains("c1"),
        "a 403 does not name the conversation: {}",
        refused.text
    );
    let (dave_id, _) = app.user("dave").await;
    let outsider = app
        .send(
            &alice,
            json!({"conversation_id": "c1", "content": "hi", "recipient_id": dave_id}),
        )
        .await;
    assert_eq!(
        outsider.status, 400,
        "a user recipient must be a member: {}",
        outsider.text
    );
    assert_eq!(
        app.send(
            &carol,
            json!({"conversation_id": "c1", "content": "let me in"})
        )
        .await
        .status,
        403
    );
    assert_eq!(app.history(&carol, "missing", "").await.status, 404);
    let spoofed = app
        .send(
            &carol,
            json!({"conversation_id": "c2", "content": "it is alice", "sender_id": alice_id}),
        )
        .await;
    assert_eq!(spoofed.status, 403);
    assert_eq!(spoofed.json()["status"], 403);

    for (sender, status) in [("alice", 202), ("bob", 403), ("no-such-user", 403)] {
        let reply = app
            .send(
                &alice,
                json!({"conversation_id": "c1", "content": "hi", "sender_id": sender}),
            )
            .await;
        assert_eq!(reply.status, status, "sender_id {sender}: {}", reply.text);
    }

    let messages = app.wait_for_history(&alice, "c1", |m| m.len() == 2).await;
    let id = messages[0]["message_id"].as_str().unwrap();
    let hidden = app.get(&format!("/v1/messages/{id}"), &carol).await;
    let missing = app.get("/v1/messages/no-such-message", &carol).await;
    assert_eq!(
        hidden.status, 404,
        "a message of someone else's conversation"
    );
    assert_eq!(
        hidden.json()["detail"].as_str().unwrap().replace(id, "X"),
        missing.json()["detail"]
            .as_str()
            .unwrap()
            .replace("no-such-message", "X"),
        "answers exactly like a missing one"
    );
    let read = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/messages/{id}/read"),
            Some(&carol),
            None,
            &[],
        )
        .await;
    assert_eq!(read.status, 404);

    let listed = app.get("/v1/conversations", &carol).await.json();
    assert_eq!(
        listed["conversations"],
        json!([]),
        "a refused message creates no conversation"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;

    let malformed = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some("{\"conversation_id\": "),
            &[],
        )
        .await;
    assert_eq!(malformed.status, 400);
    let problem = malformed.json();
    assert_eq!(problem["instance"], "/v1/messages");
    assert_eq!(problem["error"], problem["detail"]);
    for bad in [
        json!({"conversation_id": 7, "content": "x"}),
        json!({"conversation_id": "bad id", "content": "x"}),
        json!({"conversation_id": "c", "content": "   "}),
        json!({"conversation_id": "c", "content": "x", "recipient_id": "whatsapp:12"}),
        json!({"conversation_id": "c", "content": "x", "file_id": "f1"}),
        json!(["c", "x", null, null, null, null]),
    ] {
        assert_eq!(app.send(&alice, bad.clone()).await.status, 400, "{bad}");
    }

    let limit = "x".repeat(10 * 1024);
    assert_eq!(
        app.send(&alice, json!({"conversation_id": "c", "content": limit}))
            .await
            .status,
        202
    );
    let over = "x".repeat(10 * 1024 + 1);
    let too_large = app
        .send(&alice, json!({"conversation_id": "c", "content": over}))
        .await;
    assert_eq!(too_large.status, 413, "{}", too_large.text);
    let huge = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(&"x".repeat(1 << 20)),
            &[],
        )
        .await;
    assert_eq!(huge.status, 413);

    let unauthenticated = app
        .request(Method::GET, "/v1/conversations", None, None, &[])
        .await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.headers["www-authenticate"], "Bearer");
    assert_eq!(
        app.get("/v1/conversations", "not.a.token").await.status,
        401
    );

    let unknown = app
        .request(Method::GET, "/v1/nothing", None, None, &[])
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.headers["content-type"], "application/problem+json");
    let wrong_method = app
        .request(Method::DELETE, "/v1/messages", Some(&alice), None, &[])
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");
    let bad_key = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(r#"{"conversation_id":"c","content":"x"}"#),
            &[("idempotency-key", "has space")],
        )
        .await;
    assert_eq!(bad_key.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let body = r#"{"conversation_id":"c1","content":"pay 10"}"#;
    let key = [("idempotency-key", "order-42")];
    let first = app
        .request(Method::POST, "/v1/messages", Some(&alice), Some(body), &key)
        .await;
    let second = app
        .request(Method::POST, "/v1/messages", Some(&alice), Some(body), &key)
        .await;
    assert_eq!((first.status, second.status), (202, 202));
    assert_eq!(first.text, second.text);
    let other_body = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(r#"{"conversation_id":"c1","content":"pay 99"}"#),
            &key,
        )
        .await;
    assert_eq!(other_body.status, 422);

    let (_, bob) = app.user("bob").await;
    let bobs = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(r#"{"conversation_id":"b1","content":"pay 10"}"#),
            &key,
        )
        .await;
    assert_eq!(bobs.status, 202, "keys are per user");

    let messages = app
        .wait_for_history(&alice, "c1", |m| all_have_status(m, 1, "DELIVERED"))
        .await;
    assert_eq!(messages[0]["message_id"], first.json()["message_id"]);
    app.stop().await;
}

#[tokio::test]
async fn read_receipts_move_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let conversation = app
        .post(
            "/v1/conversations",
            Some(&alice),
            &json!({"type": "direct", "members": [bob_id], "conversation_id": "ab"}),
        )
        .await;
    assert_eq!(conversation.status, 201, "{}", conversation.text);
    assert_eq!(conversation.json()["members"], json!([alice_id, bob_id]));
    assert_eq!(
        app.post(
            "/v1/conversations",
            Some(&alice),
            &json!({"type": "direct", "members": [bob_id], "conversation_id": "ab"})
        )
        .await
        .status,
        409
    );

    app.send(
        &alice,
        json!({"conversation_id": "ab", "content": "to bob"}),
    )
    .await;
    app.send(
        &alice,
        json!({"conversation_id": "ab", "content": "to nowhere", "recipient_id": "telegram:12345"}),
    )
    .await;
    let messages = app
        .wait_for_history(&bob, "ab", |m| {
            m.len() == 2 && m[0]["status"] == "DELIVERED" && m[1]["status"] == "FAILED"
        })
        .await;
    assert!(
        messages[1]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("telegram")
    );
    let delivered = messages[0]["message_id"].as_str().unwrap();
    let failed = messages[1]["message_id"].as_str().unwrap();

    assert_eq!(
        app.post(
            &format!("/v1/messages/{delivered}/read"),
            Some(&alice),
            &json!({})
        )
        .await
        .status,
        403,
        "sender"
    );
    let read = app
        .post(
            &format!("/v1/messages/{delivered}/read"),
            Some(&bob),
            &json!({}),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let again = app
        .post(
            &format!("/v1/messages/{delivered}/read"),
            Some(&bob),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(read.json()["read_at"], again.json()["read_at"]);
    assert_eq!(read.json()["status"], "READ");
    assert_eq!(
        app.post(
            &format!("/v1/messages/{failed}/read"),
            Some(&bob),
            &json!({})
        )
        .await
        .status,
        409
    );

    let detail = app
        .get(&format!("/v1/messages/{delivered}"), &bob)
        .await
        .json();
    let steps = common::history_steps(&detail);
    assert_eq!(steps, ["SENT", "DELIVERED", "READ"]);
    app.stop().await;
}

#[tokio::test]
async fn channel_recipients_are_delivered_by_their_connector() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    app.send(&alice, json!({"conversation_id": "wa", "content": "hola", "recipient_id": "whatsapp:+5511999990000"})).await;
    app.send(
        &alice,
        json!({"conversation_id": "wa", "content": "oi", "recipient_id": "instagram:@maria"}),
    )
    .await;
    let messages = app
        .wait_for_history(&alice, "wa", |m| all_have_status(m, 2, "DELIVERED"))
        .await;
    let detail = app
        .get(
            &format!(
                "/v1/messages/{}",
                messages[0]["message_id"].as_str().unwrap()
            ),
            &alice,
        )
        .await
        .json();
    let last = detail["status_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("whatsapp accepted it as wamid."),
        "{last}"
    );
    app.stop().await;
}

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
    let second = chat4all_server::Application::build(common::test_config(dir.path())).await;
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
