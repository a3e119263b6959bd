//! Users' identities on external channels, and the routes they give messages to their users.

mod common;

use common::{TestApp, all_have_status, spawn_app};
use serde_json::{Value, json};

const PHONE: &str = "+5511999990000";

async fn link(app: &TestApp, token: &str, body: Value) -> common::Reply {
    app.post("/v1/users/identities", Some(token), &body).await
}

async fn identities(app: &TestApp, token: &str) -> Vec<Value> {
    let listed = app.get("/v1/users/identities", token).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json()["identities"].as_array().unwrap().clone()
}

/// `(platform, value)` of the caller's preferred identities.
async fn preferred(app: &TestApp, token: &str) -> Vec<(String, String)> {
    identities(app, token)
        .await
        .iter()
        .filter(|i| i["preferred"] == true)
        .map(|i| {
            (
                i["platform"].as_str().unwrap().into(),
                i["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The message's status steps as `(status, detail)`, oldest first.
async fn steps(app: &TestApp, token: &str, message: &Value) -> Vec<(String, String)> {
    let path = format!("/v1/messages/{}", message["message_id"].as_str().unwrap());
    app.get(&path, token).await.json()["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().into(),
                s["detail"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

/// A server with two users, `(id, token)` each; keep the directory alive.
async fn alice_and_bob() -> (
    tempfile::TempDir,
    TestApp,
    (String, String),
    (String, String),
) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    (dir, app, alice, bob)
}

#[tokio::test]
async fn identities_are_linked_listed_and_unlinked_by_their_one_user() {
    let (_dir, app, (alice_id, alice), (_, bob)) = alice_and_bob().await;

    let created = link(
        &app,
        &alice,
        json!({"platform": "whatsapp", "value": PHONE}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let body = created.json();
    assert_eq!(body["user_id"], alice_id.as_str());
    assert_eq!(
        (body["platform"].as_str(), body["value"].as_str()),
        (Some("whatsapp"), Some(PHONE))
    );
    assert_eq!(
        (&body["verified"], &body["preferred"]),
        (&json!(false), &json!(false))
    );
    assert!(body["linked_at"].as_i64().unwrap() > 0);

    let again = link(
        &app,
        &alice,
        json!({"platform": "whatsapp", "value": PHONE}),
    )
    .await;
    assert_eq!(
        (again.status, again.json()),
        (200, body.clone()),
        "linking again is idempotent"
    );
    let taken = link(&app, &bob, json!({"platform": "whatsapp", "value": PHONE})).await;
    assert_eq!(taken.status, 409, "{}", taken.text);
    assert!(
        taken.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    assert!(identities(&app, &bob).await.is_empty());

    for bad in [
        json!({"platform": "whatsapp", "value": "5511999990000"}),
        json!({"platform": "whatsapp", "value": "+12"}),
        json!({"platform": "instagram", "value": "alice"}),
        json!({"platform": "instagram", "value": "@"}),
        json!({"platform": "telegram", "value": "12345"}),
        json!({"platform": "WhatsApp", "value": PHONE}),
        json!({"value": PHONE}),
    ] {
        let refused = link(&app, &alice, bad.clone()).await;
        assert_eq!(refused.status, 400, "{bad} → {}", refused.text);
    }
    let anonymous = app
        .post(
            "/v1/users/identities",
            None,
            &json!({"platform": "whatsapp", "value": PHONE}),
        )
        .await;
    assert_eq!(anonymous.status, 401);

    // At most one preferred identity: preferring one unsets the other.
    let handle = link(
        &app,
        &alice,
        json!({"platform": "instagram", "value": "@alice", "preferred": true}),
    )
    .await;
    assert_eq!(handle.status, 201, "{}", handle.text);
    assert_eq!(
        preferred(&app, &alice).await,
        [("instagram".into(), "@alice".into())]
    );
    let other_case = link(
        &app,
        &bob,
        json!({"platform": "instagram", "value": "@ALICE"}),
    )
    .await;
    assert_eq!(
        other_case.status, 409,
        "Instagram handles are case-insensitive: {}",
        other_case.text
    );
    let phone = link(
        &app,
        &alice,
        json!({"platform": "whatsapp", "value": PHONE, "preferred": true}),
    )
    .await;
    assert_eq!(
        (phone.status, &phone.json()["preferred"]),
        (200, &json!(true))
    );
    assert_eq!(
        preferred(&app, &alice).await,
        [("whatsapp".into(), PHONE.into())]
    );
    let listed = identities(&app, &alice).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["platform"], "whatsapp", "oldest first");

    let path = "/v1/users/identities/whatsapp/%2B5511999990000";
    let not_hers = app
        .request(reqwest::Method::DELETE, path, Some(&bob), None, &[])
        .await;
    assert_eq!(not_hers.status, 404, "{}", not_hers.text);
    let removed = app
        .request(reqwest::Method::DELETE, path, Some(&alice), None, &[])
        .await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(removed.json()["value"], PHONE);
    let twice = app
        .request(reqwest::Method::DELETE, path, Some(&alice), None, &[])
        .await;
    assert_eq!(twice.status, 404);
    assert_eq!(identities(&app, &alice).await.len(), 1);
    let freed = link(&app, &bob, json!({"platform": "whatsapp", "value": PHONE})).await;
    assert_eq!(
        freed.status, 201,
        "an unlinked identity is free again: {}",
        freed.text
    );
    app.stop().await;
}

#[tokio::test]
async fn a_user_with_a_preferred_identity_gets_messages_in_app_and_on_that_channel() {
    let (_dir, app, (alice_id, alice), (_, bob)) = alice_and_bob().await;
    let linked = link(
        &app,
        &alice,
        json!({"platform": "whatsapp", "value": PHONE, "preferred": true}),
    )
    .await;
    assert_eq!(linked.status, 201, "{}", linked.text);

    let sent = app
        .send(
            &bob,
            json!({"conversation_id": "pref", "content": "oi", "recipient_id": alice_id}),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let messages = app
        .wait_for_history(&bob, "pref", |m| all_have_status(m, 1, "DELIVERED"))
        .await;
    // The connector got it: this is the only test of this binary that reaches WhatsApp.
    app.wait_for_metric(
        r#"messages_sent_total{service="connector",channel="whatsapp",status="DELIVERED"}"#,
        1.0,
    )
    .await;
    app.wait_for_metric(
        r#"messages_routed_via_identity_total{service="router",channel="whatsapp",identity="preferred"}"#,
        1.0,
    )
    .await;
    let delivered: Vec<_> = steps(&app, &bob, &messages[0])
        .await
        .into_iter()
        .filter(|(status, _)| status == "DELIVERED")
        .collect();
    assert_eq!(
        delivered,
        [(
            "DELIVERED".into(),
            format!("delivered to user {alice_id}; also sent via whatsapp")
        )],
        "delivered once, in-app, naming the hand-off; the connector's later answer changes nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_named_channel_routes_through_the_recipients_identity_there() {
    let (_dir, app, (alice_id, alice), (bob_id, bob)) = alice_and_bob().await;
    let linked = link(
        &app,
        &alice,
        json!({"platform": "instagram", "value": "@alice"}),
    )
    .await;
    assert_eq!(linked.status, 201, "{}", linked.text);

    let via = json!({"conversation_id": "ig", "content": "oi", "recipient_id": alice_id, "channel": "instagram"});
    let sent = app.send(&bob, via).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let messages = app
        .wait_for_history(&bob, "ig", |m| all_have_status(m, 1, "DELIVERED"))
        .await;
    let steps = steps(&app, &bob, &messages[0]).await;
    let (status, detail) = steps.last().unwrap();
    assert_eq!(status, "DELIVERED");
    assert!(
        detail.contains("instagram accepted it as"),
        "delivered by the connector: {steps:?}"
    );
    assert_eq!(messages[0]["recipient_id"], alice_id.as_str());

    for (body, expected) in [
        (
            json!({"conversation_id": "ig2", "content": "x", "recipient_id": bob_id, "channel": "instagram"}),
            422,
        ),
        (
            json!({"conversation_id": "ig", "content": "x", "recipient_id": alice_id, "channel": "whatsapp"}),
            422,
        ),
        (
            json!({"conversation_id": "ig", "content": "x", "recipient_id": alice_id, "channel": "telegram"}),
            400,
        ),
        (
            json!({"conversation_id": "ig", "content": "x", "channel": "instagram"}),
            400,
        ),
        (
            json!({"conversation_id": "ig", "content": "x", "recipient_id": "instagram:@alice", "channel": "instagram"}),
            400,
        ),
    ] {
        let refused = app.send(&alice, body.clone()).await;
        assert_eq!(refused.status, expected, "{body} → {}", refused.text);
    }
    let conversations = app.get("/v1/conversations", &alice).await.json();
    assert_eq!(
        conversations["conversations"].as_array().unwrap().len(),
        1,
        "a refused message creates no conversation"
    );
    app.stop().await;
}
