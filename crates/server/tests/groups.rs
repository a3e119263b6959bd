//! Groups end to end: creation, limits, admin rules, leaving and hand-over, group messages, and per-participant
//! read receipts with the READ they lead to.

mod common;

use chat4all_core::envelope::{HEADER_CORRELATION_ID, HEADER_EVENT_TYPE};
use chat4all_core::events::Topics;
use common::{Reply, TestApp, all_have_status, drain_tail, spawn_app, spawn_edited};
use reqwest::Method;
use serde_json::{Value, json};

async fn create(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/v1/groups", Some(token), &body).await
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str, correlation: &str) -> Reply {
    let headers = [("x-correlation-id", correlation)];
    app.request(method, path, Some(token), None, &headers).await
}

fn ids(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn groups_take_either_member_list_and_stay_hidden_from_non_members() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let (cy_id, _) = app.user("cyd").await;
    let (_, eve) = app.user("eve").await;

    let old = create(&app, &alice, json!({"name": "old", "member_ids": [bob_id]})).await;
    assert_eq!(old.status, 201, "{}", old.text);
    let old = old.json();
    assert_eq!(old["group_id"], old["conversation_id"]);
    assert_eq!(ids(&old["member_ids"]).len(), 2);
    assert_eq!(ids(&old["admin_ids"]), [alice_id.as_str()]);
    assert_eq!(
        (old["max_members"].as_u64(), old["created_by"].as_str()),
        (Some(256), Some(alice_id.as_str()))
    );

    let new = create(
        &app,
        &alice,
        json!({"name": " team ", "description": "ship it", "initial_members": [bob_id, cy_id, bob_id]}),
    )
    .await;
    assert_eq!(new.status, 201, "{}", new.text);
    let new = new.json();
    let id = new["group_id"].as_str().unwrap();
    assert_eq!(
        (new["name"].as_str(), new["description"].as_str()),
        (Some("team"), Some("ship it"))
    );
    let mut members = ids(&new["member_ids"]);
    members.sort_unstable();
    let mut expected = vec![alice_id.as_str(), bob_id.as_str(), cy_id.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected, "each member once, the creator included");

    let seen = app.get(&format!("/v1/groups/{id}"), &bob).await;
    assert_eq!((seen.status, seen.json()), (200, new.clone()));
    let hidden = app.get(&format!("/v1/groups/{id}"), &eve).await;
    assert_eq!(hidden.status, 404, "a non-member is told it does not exist");
    assert_eq!(
        hidden.text.replace(id, "X"),
        app.get("/v1/groups/X", &eve).await.text
    );

    let unknown = create(
        &app,
        &alice,
        json!({"name": "x", "initial_members": ["no-such-user"]}),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.json()["detail"]
            .as_str()
            .unwrap()
            .contains("unknown user no-such-user")
    );
    let blank = create(&app, &alice, json!({"name": "  "})).await;
    assert_eq!(blank.status, 400, "{}", blank.text);
    app.stop().await;
}

#[tokio::test]
async fn a_group_holds_at_most_its_configured_members() {
    let (_dir, app) = spawn_edited(|c| c.groups.max_members = 3).await;
    let (_, alice) = app.user("alice").await;
    let mut others = Vec::new();
    for name in ["bob", "cyd", "dee"] {
        others.push(app.user(name).await.0);
    }
    let over = create(
        &app,
        &alice,
        json!({"name": "big", "initial_members": others}),
    )
    .await;
    assert_eq!(over.status, 422, "{}", over.text);
    let full = create(
        &app,
        &alice,
        json!({"name": "full", "initial_members": &others[..2]}),
    )
    .await;
    assert_eq!(full.status, 201, "{}", full.text);
    let full = full.json();
    assert_eq!(full["max_members"], 3);
    let path = format!("/v1/groups/{}/members", full["group_id"].as_str().unwrap());
    let add = app
        .post(&path, Some(&alice), &json!({"user_id": others[2]}))
        .await;
    assert_eq!(add.status, 409, "{}", add.text);
    app.stop().await;
}

#[tokio::test]
async fn admins_manage_members_anyone_leaves_and_the_last_admin_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let (cy_id, cy) = app.user("cyd").await;
    let (dee_id, dee) = app.user("dee").await;
    let group = create(
        &app,
        &alice,
        json!({"name": "crew", "initial_members": [bob_id, cy_id]}),
    )
    .await;
    let id = group.json()["group_id"].as_str().unwrap().to_owned();
    let members = format!("/v1/groups/{id}/members");
    let member = |user: &str| format!("/v1/groups/{id}/members/{user}");
    let admin = |user: &str| format!("/v1/groups/{id}/admins/{user}");

    assert_eq!(
        app.post(&members, Some(&bob), &json!({"user_id": dee_id}))
            .await
            .status,
        403
    );
    assert_eq!(
        app.post(&members, Some(&alice), &json!({"user_id": "ghost"}))
            .await
            .status,
        400
    );
    let added = app
        .post(&members, Some(&alice), &json!({"user_id": dee_id}))
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    assert!(ids(&added.json()["member_ids"]).contains(&dee_id.as_str()));
    assert_eq!(app.get(&format!("/v1/groups/{id}"), &dee).await.status, 200);

    assert_eq!(
        call(&app, Method::DELETE, &member(&cy_id), &bob, "c")
            .await
            .status,
        403
    );
    assert_eq!(
        call(&app, Method::PUT, &admin(&cy_id), &bob, "c")
            .await
            .status,
        403
    );
    let promoted = call(&app, Method::PUT, &admin(&bob_id), &alice, "c").await;
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(ids(&promoted.json()["admin_ids"]).len(), 2);
    let creator = call(&app, Method::DELETE, &member(&alice_id), &bob, "c").await;
    assert_eq!(creator.status, 403, "nobody removes the creator");
    assert_eq!(
        call(&app, Method::DELETE, &member(&cy_id), &bob, "c")
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/v1/groups/{id}"), &cy).await.status,
        404,
        "cy is out"
    );
    assert_eq!(
        call(&app, Method::DELETE, &member(&cy_id), &bob, "c")
            .await
            .status,
        404
    );

    // bob leaves; alice, the last admin, leaves too: the oldest remaining member (dee, alone) takes over.
    assert_eq!(
        call(&app, Method::DELETE, &member(&bob_id), &bob, "c")
            .await
            .status,
        204
    );
    assert_eq!(
        call(&app, Method::DELETE, &member(&alice_id), &alice, "c")
            .await
            .status,
        204
    );
    let left = app.get(&format!("/v1/groups/{id}"), &dee).await.json();
    assert_eq!(ids(&left["member_ids"]), [dee_id.as_str()]);
    assert_eq!(ids(&left["admin_ids"]), [dee_id.as_str()]);
    assert_eq!(
        app.get(&format!("/v1/groups/{id}"), &alice).await.status,
        404
    );
    let metrics = app
        .request(Method::GET, "/metrics", None, None, &[])
        .await
        .text;
    for line in [
        r#"change="joined"} 1"#,
        r#"change="removed"} 1"#,
        r#"change="left"} 2"#,
        r#"change="handed_over"} 1"#,
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("group_membership_changes_total") && l.ends_with(line)),
            "{line}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_oldest_remaining_member_takes_over_from_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let (cy_id, _) = app.user("cyd").await;
    let group = create(
        &app,
        &alice,
        json!({"name": "crew", "initial_members": [bob_id]}),
    )
    .await
    .json();
    let id = group["group_id"].as_str().unwrap();
    // cy must join on a later millisecond than the group's creation, so that bob is the older member.
    let created_at = group["created_at"].as_i64().unwrap();
    while chat4all_core::time::now_millis() <= created_at {
        tokio::task::yield_now().await;
    }
    let added = app
        .post(
            &format!("/v1/groups/{id}/members"),
            Some(&alice),
            &json!({"user_id": cy_id}),
        )
        .await;
    assert_eq!(
        ids(&added.json()["member_ids"])[2],
        cy_id,
        "members are listed oldest first"
    );
    let gone = call(
        &app,
        Method::DELETE,
        &format!("/v1/groups/{id}/members/{alice_id}"),
        &alice,
        "c",
    )
    .await;
    assert_eq!(gone.status, 204);
    let after = app.get(&format!("/v1/groups/{id}"), &bob).await.json();
    assert_eq!(ids(&after["admin_ids"]), [bob_id.as_str()]);
    assert_eq!(ids(&after["member_ids"]), [bob_id.as_str(), cy_id.as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn group_messages_reach_every_member_and_become_read_when_all_others_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let mut notifications = app
        .log
        .tail(&Topics::default().notifications)
        .await
        .unwrap();
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let (cy_id, cy) = app.user("cyd").await;
    let group = create(
        &app,
        &alice,
        json!({"name": "crew", "initial_members": [bob_id, cy_id]}),
    )
    .await
    .json();
    let id = group["group_id"].as_str().unwrap().to_owned();
    let mut sent = Vec::new();
    for content in ["one", "two"] {
        let reply = app
            .send(&alice, json!({"conversation_id": id, "content": content}))
            .await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        sent.push(reply.json()["message_id"].as_str().unwrap().to_owned());
    }
    for token in [&bob, &cy] {
        app.wait_for_history(token, &id, |m| all_have_status(m, 2, "DELIVERED"))
            .await;
    }
    let read = format!("/v1/conversations/{id}/read");
    let read_up_to = |token: &str, seq: i64, correlation: &'static str| {
        let body = json!({"up_to_seq": seq}).to_string();
        let token = token.to_owned();
        let app = &app;
        let path = read.clone();
        async move {
            let headers = [("x-correlation-id", correlation)];
            app.request(Method::POST, &path, Some(&token), Some(&body), &headers)
                .await
        }
    };
    let detail = |token: &str, message: &str| {
        let (token, path) = (token.to_owned(), format!("/v1/messages/{message}"));
        let app = &app;
        async move { app.get(&path, &token).await.json() }
    };

    for bad in [0, 3, -1] {
        assert_eq!(
            read_up_to(&bob, bad, "bad").await.status,
            400,
            "up_to_seq {bad}"
        );
    }
    let bob_read = read_up_to(&bob, 2, "bob-reads").await;
    assert_eq!(bob_read.status, 200, "{}", bob_read.text);
    assert_eq!(bob_read.json()["up_to_seq"], 2);
    let first = detail(&alice, &sent[0]).await;
    assert_eq!(ids(&first["read_by"]), [bob_id.as_str()]);
    assert_eq!(first["status"], "DELIVERED", "cy has not read it yet");
    let lower = read_up_to(&bob, 1, "bob-again").await.json();
    assert_eq!(lower["up_to_seq"], 2, "a receipt never moves back");

    // cy reads the first message alone: it is READ, the second still waits for cy.
    let one = app
        .post(
            &format!("/v1/messages/{}/read", sent[0]),
            Some(&cy),
            &json!({}),
        )
        .await;
    assert_eq!(
        (one.status, one.json()["status"].as_str()),
        (200, Some("READ")),
        "{}",
        one.text
    );
    let second = detail(&cy, &sent[1]).await;
    assert_eq!(
        (second["status"].as_str(), ids(&second["read_by"])),
        (Some("DELIVERED"), vec![bob_id.as_str()])
    );
    assert_eq!(read_up_to(&cy, 2, "cy-reads").await.status, 200);
    app.wait_for_history(&alice, &id, |m| all_have_status(m, 2, "READ"))
        .await;
    let mut readers = ids(&detail(&alice, &sent[1]).await["read_by"])
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    readers.sort_unstable();
    let mut expected = vec![bob_id.clone(), cy_id.clone()];
    expected.sort_unstable();
    assert_eq!(readers, expected);
    app.stop().await;
    let reads: Vec<(String, String)> = drain_tail(&mut notifications)
        .await
        .iter()
        .filter(|r| r.header(HEADER_EVENT_TYPE) == Some("message.status_changed"))
        .map(|r| (serde_json::from_slice::<Value>(&r.payload).unwrap(), r))
        .filter(|(body, _)| body["status"] == "READ")
        .map(|(body, r)| {
            let message = body["message_id"].as_str().unwrap().to_owned();
            (message, r.header(HEADER_CORRELATION_ID).unwrap().to_owned())
        })
        .collect();
    assert_eq!(reads.len(), 2, "each READ is published once: {reads:?}");
    assert!(
        reads.contains(&(sent[1].clone(), "cy-reads".to_owned())),
        "{reads:?}"
    );
    assert!(reads.iter().any(|(m, _)| *m == sent[0]), "{reads:?}");
}
