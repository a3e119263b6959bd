//! What an attacker or a careless client can do: tokens for users that do not exist, password guessing, idle and
//! slow connections, more connections than the server takes, numbers past their range.

mod common;

use common::{spawn_app, spawn_edited};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The secret of test servers (see `test_config`).
const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let now = chat4all_core::time::now_millis() / 1000;
    let ghost = chat4all_core::ids::UserId::generate().to_string();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": ghost, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let send = app
        .send(&token, json!({"conversation_id": "c1", "content": "boo"}))
        .await;
    assert_eq!(send.status, 401, "{}", send.text);
    assert!(send.text.contains("does not exist"), "{}", send.text);
    let upload = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&token)
        .multipart(
            reqwest::multipart::Form::new()
                .text("conversation_id", "c1")
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401);
    let (_, real) = app.user("alice").await;
    assert_eq!(
        app.send(&real, json!({"conversation_id": "c1", "content": "hi"}))
            .await
            .status,
        202
    );
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_and_per_address() {
    let (_dir, app) = spawn_edited(|c| {
        c.auth.login_failures_per_user_per_min = 1; // bursts of 2
        c.auth.login_failures_per_address_per_min = 3; // bursts of 6
    })
    .await;
    app.user("alice").await;
    let login = async |name: &str, password: &str| {
        app.post(
            "/auth/token",
            None,
            &json!({"username": name, "password": password}),
        )
        .await
    };
    assert_eq!(login("alice", "wrong-password").await.status, 401);
    assert_eq!(login("alice", "wrong-password").await.status, 401);
    let throttled = login("alice", "alice-password").await;
    assert_eq!(
        throttled.status, 429,
        "even the right password waits: {}",
        throttled.text
    );
    assert!(throttled.headers.contains_key("retry-after"));

    // Spraying other names from the same address runs into the address's limit.
    let statuses = [
        login("bob", "guess-1").await.status,
        login("carol", "guess-2").await.status,
        login("dave", "guess-3").await.status,
        login("erin", "guess-4").await.status,
        login("frank", "guess-5").await.status,
    ];
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    let metrics = app
        .request(reqwest::Method::GET, "/metrics", None, None, &[])
        .await;
    for scope in ["username", "address"] {
        assert!(
            metrics
                .text
                .lines()
                .any(|l| l.starts_with("login_attempts_throttled_total")
                    && l.contains(&format!("scope=\"{scope}\""))
                    && !l.ends_with(" 0")),
            "{scope} throttling is counted"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn positions_past_their_range_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    assert_eq!(
        app.send(&alice, json!({"conversation_id": "c1", "content": "hi"}))
            .await
            .status,
        202
    );
    for query in [
        "after=9223372036854775808",
        "before=18446744073709551615",
        "offset=9223372036854775808",
        "after=18446744073709551616",
        "limit=4294967296",
        "limit=0",
        "limit=101",
    ] {
        let reply = app.history(&alice, "c1", query).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
    }
    for path in [
        "/admin/dead-letters?limit=0",
        "/admin/dead-letters?limit=10001",
    ] {
        let reply = app.admin(reqwest::Method::GET, path, None).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
    }
    let slow = json!({"mode": "slow", "extra_latency_ms": 60_001});
    let reply = app
        .admin(
            reqwest::Method::POST,
            "/admin/channels/whatsapp/fault",
            Some(&slow),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    for query in [
        "after=9223372036854775807",
        "before=9223372036854775807",
        "offset=9223372036854775807",
    ] {
        assert_eq!(
            app.history(&alice, "c1", query).await.status,
            200,
            "{query}"
        );
    }
    app.stop().await;
}

/// Connects and sends `bytes`.
async fn open(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Reads until the server closes the connection (failing after 20 s); returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    let (_dir, app) = spawn_edited(|c| {
        c.http.header_read_timeout = Duration::from_secs(1);
        c.http.keep_alive_timeout = Duration::from_secs(60);
    })
    .await;

    // Headers that never end.
    let started = Instant::now();
    let mut slow = open(app.addr, b"GET /health/live HTTP/1.1\r\nhost: x\r\n").await;
    until_closed(&mut slow).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );

    // A silent connection.
    let mut silent = open(app.addr, b"").await;
    until_closed(&mut silent).await;

    app.stop().await;
}

#[tokio::test]
async fn kept_alive_connections_are_closed_when_idle() {
    let (_dir, app) = spawn_edited(|c| {
        c.http.header_read_timeout = Duration::from_secs(60);
        c.http.keep_alive_timeout = Duration::from_secs(1);
    })
    .await;
    let mut kept = open(app.addr, b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let answered = until_closed(&mut kept).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_408() {
    let (_dir, app) = spawn_edited(|c| {
        c.http.request_timeout = Duration::from_secs(1);
        c.http.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    // A JSON body announced at 100 bytes that stops after 10.
    let mut stalled = open(
        app.addr,
        b"POST /auth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"username",
    )
    .await;
    let answer = until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_closed() {
    let (_dir, app) = spawn_edited(|c| {
        c.http.max_connections = Some(8);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open(app.addr, b"").await);
    }
    let mut extra = open(app.addr, b"").await;
    let refused = until_closed(&mut extra).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    let (head, body) = refused.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{refused}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap()["status"],
        503
    );

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app.client.get(app.url("/health/live")).send().await;
        if reply.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "freed connections are never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_never_cached_and_no_answer_is_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    app.user("alice").await;
    let token = app
        .post(
            "/auth/token",
            None,
            &json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    assert_eq!(token.headers["cache-control"], "no-store");
    for reply in [
        token,
        app.request(reqwest::Method::GET, "/health/live", None, None, &[])
            .await,
        app.request(reqwest::Method::GET, "/no-such-route", None, None, &[])
            .await,
    ] {
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_upload_whose_body_pauses_too_long_is_cut() {
    let (_dir, app) = spawn_edited(|c| {
        c.http.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let (_, alice) = app.user("alice").await;
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {alice}\r\n\
         content-type: multipart/form-data; boundary=b\r\ncontent-length: 100000\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello"
    );
    let started = Instant::now();
    let mut stalled = open(app.addr, head.as_bytes()).await;
    let answer = until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the pause limit"
    );
    app.stop().await;
}
