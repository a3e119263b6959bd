//! End to end, against the real server on port 0: accounts and tokens, and who may read and write where
//! (membership, sender rules, answers that reveal nothing).

mod common;

use common::spawn_app;
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
async fn users_look_each_other_up_by_id_or_name_and_see_no_email() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_id, alice) = app.user("alice").await;
    let registered = app
        .post(
            "/auth/register",
            None,
            &json!({"username": "bob", "password": "bob-password", "email": "bob@example.com"}),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    let bob_id = registered.json()["user_id"].as_str().unwrap().to_owned();

    for who in [bob_id.as_str(), "bob"] {
        let found = app.get(&format!("/v1/users/{who}"), &alice).await;
        assert_eq!(found.status, 200, "{who}: {}", found.text);
        assert_eq!(
            found.json(),
            json!({"user_id": bob_id, "username": "bob"}),
            "{who}: the e-mail stays private"
        );
    }
    assert_eq!(app.get("/v1/users/nobody", &alice).await.status, 404);
    assert_eq!(
        app.request(reqwest::Method::GET, "/v1/users/bob", None, None, &[])
            .await
            .status,
        401
    );

    let ghost = uuid::Uuid::now_v7().to_string();
    let listed = app
        .get(
            &format!("/v1/users?ids={alice_id},{ghost},{bob_id}"),
            &alice,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let mut names: Vec<_> = listed.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);

    let too_many = vec![bob_id.as_str(); 101].join(",");
    let refused = app.get(&format!("/v1/users?ids={too_many}"), &alice).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(app.get("/v1/users?ids=bad%20id", &alice).await.status, 400);
    assert_eq!(app.get("/v1/users", &alice).await.status, 400);
    app.stop().await;
}
