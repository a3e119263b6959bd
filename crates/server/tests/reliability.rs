//! Delivery that survives failures, end to end: store-and-forward, isolation, expiry, dead letters and replay,
//! poison events, rate limits.

mod common;

use common::{TestApp, spawn_app, spawn_with, test_config};
use reqwest::Method;
use serde_json::{Value, json};

/// Injects a fault and waits until the channel's connector reports it applied (it learns of it through the store).
async fn fault(app: &TestApp, channel: &str, body: Value) {
    let reply = app
        .admin(
            Method::POST,
            &format!("/admin/channels/{channel}/fault"),
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let expected = match body["mode"].as_str() {
        Some("ok") => Value::Null,
        mode => json!(mode),
    };
    for _ in 0..500 {
        let report = app.client.get(app.url("/health")).send().await.unwrap();
        let report: Value = report.json().await.unwrap();
        if report["components"][format!("connector_{channel}")]["fault"] == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the {channel} connector never reported the fault {expected}");
}

/// Takes WhatsApp down and sends it `count` messages in conversation `wa`; returns them once all are PENDING.
async fn park_on_whatsapp(app: &TestApp, token: &str, count: usize) -> Vec<Value> {
    fault(
        app,
        "whatsapp",
        json!({"mode": "down", "duration_secs": 600}),
    )
    .await;
    for i in 1..=count {
        let body = json!({"conversation_id": "wa", "content": format!("m{i}"), "recipient_id": "whatsapp:+5511999990000"});
        assert_eq!(app.send(token, body).await.status, 202);
    }
    app.wait_for_history(token, "wa", |m| {
        m.len() == count && statuses(m).iter().all(|s| *s == "PENDING")
    })
    .await
}

fn statuses(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_down_channel_parks_messages_and_delivers_them_in_order_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let parked = park_on_whatsapp(&app, &alice, 5).await;
    assert!(
        parked[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("whatsapp"),
        "{}",
        parked[0]
    );

    // A sick channel never delays a healthy one.
    let body =
        json!({"conversation_id": "ig", "content": "hello", "recipient_id": "instagram:@maria"});
    assert_eq!(app.send(&alice, body).await.status, 202);
    app.wait_for_history(&alice, "ig", |m| statuses(m) == ["DELIVERED"])
        .await;

    // Repeated failures open WhatsApp's breaker (it then alternates with HALF_OPEN probes); poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let health = app.request(Method::GET, "/health", None, None, &[]).await;
        assert_eq!(
            health.status, 200,
            "a down channel does not make the process unhealthy"
        );
        let report = health.json();
        assert_eq!(
            report["components"]["connector_instagram"]["circuit_breaker"],
            "CLOSED"
        );
        let whatsapp = &report["components"]["connector_whatsapp"];
        if whatsapp["circuit_breaker"] != "CLOSED" {
            assert_eq!(whatsapp["pending"], 5, "{whatsapp}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker never opened: {whatsapp}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = app
        .request(Method::GET, "/metrics", None, None, &[])
        .await
        .text;
    assert!(
        metrics.contains(
            "circuit_breaker_transitions_total{service=\"connector\",channel=\"whatsapp\",from=\"CLOSED\",to=\"OPEN\"}"
        ),
        "{metrics}"
    );

    let out_of_range = json!({"mode": "down", "failure_rate": -1});
    let refused = app
        .admin(
            Method::POST,
            "/admin/channels/whatsapp/fault",
            Some(&out_of_range),
        )
        .await;
    assert_eq!(
        refused.status, 400,
        "a failure_rate out of range is refused in any mode"
    );
    fault(&app, "whatsapp", json!({"mode": "ok"})).await;
    let delivered = app
        .wait_for_history(&alice, "wa", |m| {
            m.len() == 5 && statuses(m).iter().all(|s| *s == "DELIVERED")
        })
        .await;
    let times: Vec<i64> = delivered
        .iter()
        .map(|m| m["delivered_at"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "delivered in seq order: {times:?}"
    );
    let detail = app
        .get(
            &format!(
                "/v1/messages/{}",
                delivered[0]["message_id"].as_str().unwrap()
            ),
            &alice,
        )
        .await
        .json();
    let steps = common::history_steps(&detail);
    assert_eq!(steps, ["SENT", "PENDING", "DELIVERED"]);
    app.stop().await;
}

#[tokio::test]
async fn a_backlog_reports_its_deliveries_as_it_goes_not_when_the_whole_run_is_done() {
    let (_dir, app) = common::spawn_edited(|config| {
        let whatsapp = config.channels.get_mut("whatsapp").unwrap();
        whatsapp.latency_ms = "100".parse().unwrap();
    })
    .await;
    let (_, alice) = app.user("alice").await;
    let count = 40;
    park_on_whatsapp(&app, &alice, count).await;
    fault(&app, "whatsapp", json!({"mode": "ok"})).await;
    // One conversation's messages go one after another: 40 calls of 100 ms. Its first statuses are written after
    // a round's time (1 s), while the rest still wait.
    let first = app
        .wait_for_history(&alice, "wa", |m| statuses(m).contains(&"DELIVERED"))
        .await;
    let delivered = statuses(&first)
        .iter()
        .filter(|s| **s == "DELIVERED")
        .count();
    assert!(
        delivered < count,
        "all {count} became DELIVERED at once: the statuses waited for the whole run"
    );
    app.wait_for_history(&alice, "wa", |m| {
        statuses(m).iter().all(|s| *s == "DELIVERED")
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn expired_messages_fail_go_to_dead_letters_and_replay_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    fault(
        &app,
        "instagram",
        json!({"mode": "down", "duration_secs": 600}),
    )
    .await;
    let body = json!({"conversation_id": "exp", "content": "too late", "recipient_id": "instagram:@maria", "validity_seconds": 1});
    assert_eq!(app.send(&alice, body).await.status, 202);
    let failed = app
        .wait_for_history(&alice, "exp", |m| statuses(m) == ["FAILED"])
        .await;
    assert!(
        failed[0]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        failed[0]
    );

    let letters = app
        .admin(Method::GET, "/admin/dead-letters", None)
        .await
        .json();
    assert_eq!(letters["count"], 1, "{letters}");
    assert_eq!(letters["dead_letters"][0]["reason"], "expired");
    assert!(
        letters["dead_letters"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("outbound.instagram/")
    );

    fault(&app, "instagram", json!({"mode": "ok"})).await;
    let replayed = app
        .admin(
            Method::POST,
            "/admin/dead-letters/replay",
            Some(&json!({"channel": "instagram"})),
        )
        .await;
    assert_eq!(replayed.json()["replayed"], 1, "{}", replayed.text);
    app.wait_for_history(&alice, "exp", |m| statuses(m) == ["DELIVERED"])
        .await;
    let none = app
        .admin(
            Method::POST,
            "/admin/dead-letters/replay",
            Some(&json!({"channel": "whatsapp"})),
        )
        .await;
    assert_eq!(none.json()["replayed"], 0, "the channel filter applies");
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_routing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    assert_eq!(
        app.request(
            Method::GET,
            "/admin/dead-letters",
            Some("wrong-token"),
            None,
            &[]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        app.request(Method::GET, "/admin/dead-letters", Some(&alice), None, &[])
            .await
            .status,
        401,
        "a user token is not an admin token"
    );

    let poison = json!({"topic": "messages", "key": "c1", "payload": "{definitely not an event", "headers": {"event-type": "message.accepted"}});
    assert_eq!(
        app.admin(Method::POST, "/admin/events", Some(&poison))
            .await
            .status,
        202
    );
    assert_eq!(
        app.send(
            &alice,
            json!({"conversation_id": "c1", "content": "after the poison"})
        )
        .await
        .status,
        202
    );
    app.wait_for_history(&alice, "c1", |m| statuses(m) == ["DELIVERED"])
        .await;
    let letters = app
        .admin(Method::GET, "/admin/dead-letters", None)
        .await
        .json();
    assert_eq!(letters["count"], 1, "{letters}");
    assert!(
        letters["dead_letters"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("undecodable")
    );
    assert_eq!(
        letters["dead_letters"][0]["payload"],
        "{definitely not an event"
    );
    app.stop().await;
}

#[tokio::test]
async fn users_over_their_rate_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.rate_limit_per_sec = 2;
    let app = spawn_with(config).await;
    let (_, alice) = app.user("alice").await;
    let mut limited = None;
    for _ in 0..20 {
        let reply = app.get("/v1/conversations", &alice).await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200);
    }
    let limited = limited.expect("20 requests at once pass a limit of 2/s with bursts of 4");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(limited.json()["status"], 429);
    let (_, bob) = app.user("bob").await;
    assert_eq!(
        app.get("/v1/conversations", &bob).await.status,
        200,
        "limits are per user"
    );
    app.stop().await;
}

#[tokio::test]
async fn parked_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    park_on_whatsapp(&app, &alice, 3).await;
    app.stop().await;

    // The operator's fault outlives the restart (it is kept in the store for its duration): the parked messages
    // wait until it is lifted, then go out in order.
    let app = spawn_app(dir.path()).await;
    let still_parked = app.history(&alice, "wa", "limit=100").await.json();
    assert_eq!(
        statuses(still_parked["messages"].as_array().unwrap()),
        ["PENDING"; 3]
    );
    fault(&app, "whatsapp", json!({"mode": "ok"})).await;
    let delivered = app
        .wait_for_history(&alice, "wa", |m| {
            m.len() == 3 && statuses(m).iter().all(|s| *s == "DELIVERED")
        })
        .await;
    let contents: Vec<&str> = delivered
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m1", "m2", "m3"]);
    app.stop().await;
}

#[tokio::test]
async fn a_message_read_while_its_channel_was_down_becomes_read_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let body = json!({"conversation_id": "wa", "type": "group", "members": [bob_id]});
    let created = app.post("/v1/conversations", Some(&alice), &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    park_on_whatsapp(&app, &alice, 1).await;
    let read = app
        .post(
            "/v1/conversations/wa/read",
            Some(&bob),
            &json!({"up_to_seq": 1}),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let waiting = app.history(&alice, "wa", "limit=10").await.json();
    assert_eq!(
        waiting["messages"][0]["status"], "PENDING",
        "not READ before the channel delivered it"
    );

    fault(&app, "whatsapp", json!({"mode": "ok"})).await;
    let read = app
        .wait_for_history(&alice, "wa", |m| statuses(m) == ["READ"])
        .await;
    let path = format!("/v1/messages/{}", read[0]["message_id"].as_str().unwrap());
    let detail = app.get(&path, &alice).await.json();
    assert_eq!(
        common::history_steps(&detail),
        ["SENT", "PENDING", "DELIVERED", "READ"]
    );
    app.stop().await;
}
