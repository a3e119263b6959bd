//! End to end, against the real server on port 0: the WebSocket stream of a user's conversations.

mod common;

use common::{TestApp, spawn_app};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `path` with the token in the query string, or in the Authorization header when `header` is true.
async fn open(app: &TestApp, path: &str, token: &str, header: bool) -> Socket {
    let url = if header {
        format!("ws://{}{path}", app.addr)
    } else {
        format!("ws://{}{path}?token={token}", app.addr)
    };
    let mut request = url.into_client_request().unwrap();
    if header {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    socket
}

/// The next JSON text frame (server pings are answered by the client library); fails after 10 s.
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("no frame within 10 s")
            .expect("socket closed")
            .expect("socket error");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_bad_token_is_refused_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    for path in ["/v1/ws?token=nonsense", "/notifications", "/v1/ws"] {
        let reply = app
            .client
            .get(app.url(path))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn members_see_each_change_once_in_order_on_every_socket_and_others_see_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let (carol_id, carol) = app.user("carol").await;
    group(&app, &alice, "live", &[&bob_id]).await;
    let mut bob_sockets = vec![
        open(&app, "/v1/ws", &bob, false).await,
        open(&app, "/notifications", &bob, true).await,
    ];
    let mut outsider = open(&app, "/v1/ws", &carol, false).await;

    for i in 1..=5 {
        let body = json!({"conversation_id": "live", "content": format!("m{i}")});
        assert_eq!(app.send(&alice, body).await.status, 202);
    }
    for socket in &mut bob_sockets {
        let mut seqs = Vec::new();
        let mut delivered = Vec::new();
        while delivered.len() < 5 {
            let frame = next_json(socket).await;
            match frame["type"].as_str() {
                Some("new_message") => {
                    assert_eq!(frame["conversation_id"], "live");
                    assert_eq!(frame["content"], format!("m{}", frame["seq"]));
                    seqs.push(frame["seq"].as_u64().unwrap());
                }
                Some("status_update") => {
                    let seq = frame["seq"].as_u64().unwrap();
                    assert!(
                        seqs.contains(&seq),
                        "a status change follows its message: {frame}"
                    );
                    assert_eq!(frame["status"], "DELIVERED");
                    delivered.push(seq);
                }
                other => panic!("unexpected frame {other:?}: {frame}"),
            }
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5], "each new message once, in seq order");
        delivered.sort_unstable();
        assert_eq!(delivered, [1, 2, 3, 4, 5], "each status change once");
    }

    // Everything bob got was queued for carol at the same moment if it had been meant for her: a ping answered
    // with nothing before the pong shows her queue is empty.
    outsider
        .send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    let answer = next_json(&mut outsider).await;
    assert_eq!(answer, json!({"type": "pong"}), "{carol_id} is no member");
    app.stop().await;
}

/// Creates the group conversation `id` of the caller of `token`, with `members`.
async fn group(app: &TestApp, token: &str, id: &str, members: &[&str]) {
    let body = json!({"conversation_id": id, "type": "group", "members": members});
    let created = app.post("/v1/conversations", Some(token), &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
}

/// Sends message `m{i}` to the conversation `catch`.
async fn send(app: &TestApp, token: &str, i: u64) {
    let body = json!({"conversation_id": "catch", "content": format!("m{i}")});
    assert_eq!(app.send(token, body).await.status, 202);
}

/// The `seq` of the next `new_message` frame, skipping status changes.
async fn next_new_message(socket: &mut Socket) -> (u64, Value) {
    loop {
        let frame = next_json(socket).await;
        if frame["type"] == "new_message" {
            return (frame["seq"].as_u64().unwrap(), frame);
        }
    }
}

#[tokio::test]
async fn a_client_that_reconnects_after_a_restart_catches_up_from_history_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    group(&app, &alice, "catch", &[&bob_id]).await;
    let mut seen = Vec::new();
    let mut socket = open(&app, "/v1/ws", &bob, false).await;
    for i in 1..=3 {
        send(&app, &alice, i).await;
        seen.push(next_new_message(&mut socket).await.0);
    }
    drop(socket);
    for i in 4..=6 {
        send(&app, &alice, i).await; // bob is away
    }
    app.stop().await;

    let app = spawn_app(dir.path()).await;
    // The documented order: the socket first, then history after the last seq seen, then newer socket frames.
    let mut socket = open(&app, "/v1/ws", &bob, false).await;
    send(&app, &alice, 7).await;
    let last_seen = *seen.last().unwrap();
    let missed = app
        .wait_for_page(
            &bob,
            "catch",
            &format!("after={last_seen}&limit=100"),
            |m| m.len() == 4,
        )
        .await;
    let from_history: Vec<u64> = missed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    seen.extend(&from_history);
    let newest = *from_history.last().unwrap();
    send(&app, &alice, 8).await;
    let mut overlap = 0;
    loop {
        let (seq, frame) = next_new_message(&mut socket).await;
        if seq > newest {
            seen.push(seq);
        } else {
            overlap += 1;
        }
        if frame["content"] == "m8" {
            break;
        }
    }
    assert!(
        overlap >= 1,
        "m7 reached both the socket and history, so the rule was put to the test"
    );
    assert_eq!(
        seen,
        (1..=8).collect::<Vec<u64>>(),
        "every message exactly once"
    );
    for message in &missed {
        assert_eq!(message["content"], format!("m{}", message["seq"]));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_read_receipt_reaches_the_sender_live() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    group(&app, &alice, "seen", &[&bob_id]).await;
    let mut socket = open(&app, "/v1/ws", &alice, false).await;
    let sent = app
        .send(
            &alice,
            json!({"conversation_id": "seen", "content": "read me"}),
        )
        .await;
    let id = sent.json()["message_id"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    while !statuses.contains(&"DELIVERED".to_owned()) {
        let frame = next_json(&mut socket).await;
        if frame["type"] == "status_update" {
            statuses.push(frame["status"].as_str().unwrap().to_owned());
        }
    }
    let read = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/messages/{id}/read"),
            Some(&bob),
            None,
            &[],
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let frame = next_json(&mut socket).await;
    assert_eq!(
        (
            frame["type"].as_str(),
            frame["status"].as_str(),
            frame["message_id"].as_str()
        ),
        (Some("status_update"), Some("READ"), Some(id.as_str()))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_socket_closes_when_its_token_expires() {
    let (_dir, app) = common::spawn_edited(|c| c.auth.token_ttl = Duration::from_secs(1)).await;
    let (_, alice) = app.user("alice").await;
    let mut socket = open(&app, "/v1/ws", &alice, false).await;
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the socket outlived its token")
            .expect("closed without a close frame")
            .expect("socket error");
        if let Message::Close(close) = frame {
            break close.expect("a close frame with a code");
        }
    };
    assert_eq!(u16::from(close.code), 4001, "{}", close.reason);
    app.stop().await;
}
