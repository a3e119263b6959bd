//! End to end, against the real server on port 0: sending messages, their routing and delivery, history in
//! order, read receipts, idempotency and the errors bad requests get.

mod common;

use common::{all_have_status, spawn_app, spawn_edited};
use reqwest::Method;
use serde_json::json;

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

    // A retry is answered from its first answer even when the request would now be refused: bob left the group.
    let (carol_id, _) = app.user("carol").await;
    let group = app
        .post(
            "/v1/groups",
            Some(&bob),
            &json!({"name": "g", "initial_members": [carol_id]}),
        )
        .await
        .json();
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    let body = json!({"conversation_id": group_id, "content": "before leaving"}).to_string();
    let leave_key = [("idempotency-key", "leave-1")];
    let sent = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(&body),
            &leave_key,
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let me = group["created_by"].as_str().unwrap().to_owned();
    let left = app
        .request(
            Method::DELETE,
            &format!("/v1/groups/{group_id}/members/{me}"),
            Some(&bob),
            None,
            &[],
        )
        .await;
    assert_eq!(left.status, 204, "{}", left.text);
    let retried = app
        .request(
            Method::POST,
            "/v1/messages",
            Some(&bob),
            Some(&body),
            &leave_key,
        )
        .await;
    assert_eq!((retried.status, retried.text), (202, sent.text));
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
async fn listed_conversations_carry_the_callers_reading_position() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let quiet = app
        .post(
            "/v1/conversations",
            Some(&alice),
            &json!({"conversation_id": "quiet", "type": "group", "members": [bob_id]}),
        )
        .await;
    assert_eq!(quiet.status, 201, "{}", quiet.text);
    assert!(
        quiet.json().get("unread").is_none(),
        "only listed conversations carry a reading position"
    );
    // alice sends seq 1 and 2, then bob seq 3: each batch stored before the next, so the order is known.
    let to_bob = json!({"conversation_id": "chat", "content": "hi", "recipient_id": bob_id});
    let to_alice = json!({"conversation_id": "chat", "content": "hello"});
    for (token, body, stored) in [
        (&alice, &to_bob, 1),
        (&alice, &to_bob, 2),
        (&bob, &to_alice, 3),
    ] {
        let reply = app.send(token, body.clone()).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        app.wait_for_history(&alice, "chat", |m| m.len() == stored)
            .await;
    }
    let reading = |token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let page = app.get("/v1/conversations", &token).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let mut found: Vec<(String, u64, u64, u64)> = page.json()["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let n = |field: &str| c[field].as_u64().expect(field);
                    let id = c["conversation_id"].as_str().unwrap().to_owned();
                    (id, n("last_seq"), n("read_up_to"), n("unread"))
                })
                .collect();
            found.sort();
            found
        }
    };
    let of = |id: &str, last_seq, read_up_to, unread| (id.to_owned(), last_seq, read_up_to, unread);
    assert_eq!(
        reading(&alice).await,
        [of("chat", 3, 0, 1), of("quiet", 0, 0, 0)],
        "alice's own messages are not unread to her"
    );
    assert_eq!(
        reading(&bob).await,
        [of("chat", 3, 0, 2), of("quiet", 0, 0, 0)]
    );
    let read = |token: &str, up_to_seq: u64| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let reply = app
                .post(
                    "/v1/conversations/chat/read",
                    Some(&token),
                    &json!({"up_to_seq": up_to_seq}),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    };
    read(&bob, 1).await;
    assert_eq!(reading(&bob).await[0], of("chat", 3, 1, 1));
    read(&bob, 3).await;
    assert_eq!(reading(&bob).await[0], of("chat", 3, 3, 0));
    read(&alice, 2).await;
    assert_eq!(reading(&alice).await[0], of("chat", 3, 2, 1));
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
async fn conversations_are_listed_by_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    for i in 0..5 {
        let body = json!({"conversation_id": format!("list-{i}"), "type": "group", "members": []});
        assert_eq!(
            app.post("/v1/conversations", Some(&alice), &body)
                .await
                .status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = app.get(&format!("/v1/conversations?{query}"), &alice).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        let ids = page["conversations"].as_array().unwrap();
        assert!(ids.len() <= 2);
        seen.extend(ids.iter().map(|c| {
            (
                -c["created_at"].as_i64().unwrap(),
                c["conversation_id"].as_str().unwrap().to_owned(),
            )
        }));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected = seen.clone();
    expected.sort();
    assert_eq!(seen, expected, "newest first, ties by id");
    let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    assert_eq!(
        unique,
        ["list-0", "list-1", "list-2", "list-3", "list-4"],
        "each once"
    );
    for bad in [
        "limit=0",
        "limit=101",
        "cursor=nonsense",
        "cursor=12.%20bad",
    ] {
        let reply = app.get(&format!("/v1/conversations?{bad}"), &alice).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_bench_endpoint_answers_like_a_send_but_stores_nothing_and_is_off_by_default() {
    let body = json!({"conversation_id": "bench", "content": "hello"});
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    assert_eq!(
        app.post("/bench/messages", Some(&alice), &body)
            .await
            .status,
        404
    );
    app.stop().await;

    let (_dir, app) = spawn_edited(|config| config.http.bench_endpoints = true).await;
    let (_, alice) = app.user("alice").await;
    let answer = app.post("/bench/messages", Some(&alice), &body).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(
        (&answer.json()["status"], &answer.json()["conversation_id"]),
        (&json!("ACCEPTED"), &json!("bench"))
    );
    assert_eq!(app.post("/bench/messages", None, &body).await.status, 401);
    assert_eq!(
        app.request(
            Method::POST,
            "/bench/messages",
            Some(&alice),
            Some("{"),
            &[]
        )
        .await
        .status,
        400
    );
    // The same checks of the text as a send.
    let blank = json!({"conversation_id": "bench", "content": "  "});
    assert_eq!(
        app.post("/bench/messages", Some(&alice), &blank)
            .await
            .status,
        400
    );
    let long = json!({"conversation_id": "bench", "content": "x".repeat(10 * 1024 + 1)});
    assert_eq!(
        app.post("/bench/messages", Some(&alice), &long)
            .await
            .status,
        413
    );
    let history = app.get("/v1/conversations/bench/messages", &alice).await;
    assert_eq!(history.status, 404, "nothing was stored: {}", history.text);
    app.stop().await;
}
