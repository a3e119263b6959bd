//! The real-time stream against the real server: live frames, reconnection with catch-up after an outage and
//! across a server restart (every message exactly once), and the fatal 401.

mod common;

use chat4all_client::{Client, Event, NewConversation, NewMessage, Watch, WatchOptions};
use common::{Proxy, TestApp, Typed, next_event, spawn_app, wait_for_history};
use std::collections::HashMap;
use std::time::Duration;

fn fast_options() -> WatchOptions {
    WatchOptions {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ping_interval: Duration::from_millis(500),
        page_size: 2,
        ..WatchOptions::default()
    }
}

/// Messages from the watch until `count` arrived (other events are kept aside); fails after 10 s per event.
async fn messages(
    watch: &mut Watch,
    count: usize,
    others: &mut Vec<Event>,
) -> Vec<(String, u64, String, bool)> {
    let mut got = Vec::new();
    while got.len() < count {
        match next_event(watch).await {
            Event::Message { message, caught_up } => got.push((
                message.conversation_id,
                message.seq,
                message.content,
                caught_up,
            )),
            other => others.push(other),
        }
    }
    got
}

async fn send(client: &Client, conversation: &str, text: &str) {
    client
        .send_message(&NewMessage::text(conversation, text))
        .await
        .unwrap();
}

async fn group(alice: &Client, id: &str, bob_id: &str) {
    alice
        .create_conversation(&NewConversation {
            conversation_id: Some(id.into()),
            kind: "group".into(),
            members: vec![bob_id.into()],
            name: None,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_live_then_catches_up_after_an_outage_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, _) = app.logged_in("alice").await;
    let (bob_direct, bob_id) = app.logged_in("bob").await;
    group(&alice, "catch", &bob_id).await;
    send(&alice, "catch", "before the watch").await; // seq 1: history, not news
    wait_for_history(&alice, "catch", 1).await;
    // Its frame went out to nobody (a message accepted while the socket opens may come live: it is still new).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let proxy = Proxy::start(app.addr).await;
    let bob = Client::new(&proxy.url())
        .unwrap()
        .with_token(bob_direct.token().unwrap());
    let mut watch = bob.watch(fast_options()).await.unwrap();
    assert!(matches!(
        next_event(&mut watch).await,
        Event::Connected {
            reconnected: false,
            ..
        }
    ));

    let mut others = Vec::new();
    for i in 1..=3 {
        send(&alice, "catch", &format!("live {i}")).await;
    }
    let live = messages(&mut watch, 3, &mut others).await;
    let seqs: Vec<u64> = live.iter().map(|m| m.1).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert!(live.iter().all(|m| !m.3), "live frames are not caught up");

    // The network goes away; messages are sent meanwhile, one in a conversation that did not exist yet.
    proxy.cut();
    for i in 1..=3 {
        send(&alice, "catch", &format!("missed {i}")).await;
    }
    group(&alice, "new-while-away", &bob_id).await;
    send(&alice, "new-while-away", "hello while away").await;
    wait_for_history(&alice, "catch", 7).await;
    wait_for_history(&alice, "new-while-away", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // their frames went out to nobody
    proxy.restore(None);

    // Catch-up: the missed messages from history, then only newer frames.
    let caught = messages(&mut watch, 4, &mut others).await;
    assert!(
        others
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "{others:?}"
    );
    assert!(
        others.iter().any(|e| matches!(
            e,
            Event::Connected {
                reconnected: true,
                ..
            }
        )),
        "{others:?}"
    );
    assert!(caught.iter().all(|m| m.3), "{caught:?}");
    let mut contents: Vec<&str> = caught.iter().map(|m| m.2.as_str()).collect();
    contents.sort_unstable();
    assert_eq!(
        contents,
        ["hello while away", "missed 1", "missed 2", "missed 3"]
    );
    send(&alice, "catch", "after").await;
    let after = messages(&mut watch, 1, &mut others).await;
    assert_eq!(after[0].2, "after");
    assert_eq!(after[0].1, 8);
    assert!(!after[0].3);

    // Nothing else arrives: every message exactly once.
    let extra = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            if let Some(Ok(Event::Message { message, .. })) = watch.next().await {
                return message;
            }
        }
    })
    .await;
    assert!(extra.is_err(), "a duplicate: {extra:?}");
    let last = watch.last_seen();
    assert_eq!(last.get("catch"), Some(&8));
    assert_eq!(last.get("new-while-away"), Some(&1));
    drop(watch);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_catches_up_across_a_server_restart_and_resumes_from_a_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, _) = app.logged_in("alice").await;
    let (bob_direct, bob_id) = app.logged_in("bob").await;
    let alice_token = alice.token().unwrap();
    let bob_token = bob_direct.token().unwrap();
    group(&alice, "restart", &bob_id).await;

    let proxy = Proxy::start(app.addr).await;
    let bob = Client::new(&proxy.url())
        .unwrap()
        .with_token(bob_token.clone());
    let mut watch = bob.watch(fast_options()).await.unwrap();
    let mut others = Vec::new();
    send(&alice, "restart", "one").await;
    assert_eq!(messages(&mut watch, 1, &mut others).await[0].2, "one");

    // The server restarts on the same data directory (a new port, behind the same proxy address).
    proxy.cut();
    app.stop().await;
    let app = spawn_app(dir.path()).await;
    let alice = app.client().with_token(alice_token);
    send(&alice, "restart", "two").await;
    send(&alice, "restart", "three").await;
    proxy.restore(Some(app.addr));
    let caught = messages(&mut watch, 2, &mut others).await;
    let got: Vec<(u64, &str)> = caught.iter().map(|m| (m.1, m.2.as_str())).collect();
    assert_eq!(got, [(2, "two"), (3, "three")]);
    let saved: HashMap<String, u64> = watch.last_seen();
    drop(watch);

    // Later, a new watch resumes from the saved position.
    send(&alice, "restart", "four").await;
    wait_for_history(&alice, "restart", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // its frame went out to nobody
    let options = WatchOptions {
        resume_from: saved,
        ..fast_options()
    };
    let mut watch = bob.watch(options).await.unwrap();
    let resumed = messages(&mut watch, 1, &mut others).await;
    assert_eq!(
        (resumed[0].1, resumed[0].2.as_str(), resumed[0].3),
        (4, "four", true)
    );
    drop(watch);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_a_401_not_a_reconnection_loop() {
    let dir = tempfile::tempdir().unwrap();
    let app: TestApp = spawn_app(dir.path()).await;
    let forged = app.client().with_token("forged");
    let e = forged.watch(WatchOptions::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let anonymous = app
        .client()
        .watch(WatchOptions::default())
        .await
        .unwrap_err();
    assert!(anonymous.is_unauthorized());

    // The raw socket: connected first, then a pong for a ping.
    let (alice, _) = app.logged_in("alice").await;
    let mut socket = alice.connect_ws().await.unwrap();
    let first = socket.next_frame().await.unwrap().unwrap();
    assert!(matches!(
        first,
        chat4all_client::ServerFrame::Connected { .. }
    ));
    socket.ping().await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), socket.next_frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, chat4all_client::ServerFrame::Pong);
    socket.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_made_while_disconnected_is_caught_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice_direct, _) = app.logged_in("alice").await;
    let (bob, bob_id) = app.logged_in("bob").await;
    group(&alice_direct, "ticks", &bob_id).await;
    let proxy = Proxy::start(app.addr).await;
    let alice = Client::new(&proxy.url())
        .unwrap()
        .with_token(alice_direct.token().unwrap());
    let mut watch = alice.watch(fast_options()).await.unwrap();

    // alice sends; her watch sees the message, then DELIVERED.
    let sent = alice
        .send_message(&NewMessage::text("ticks", "read me"))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    let mut saw_message = false;
    while statuses.is_empty() {
        match next_event(&mut watch).await {
            Event::Message { message, .. } => saw_message |= message.message_id == sent.message_id,
            Event::Status(update) => statuses.push(update.status),
            _ => {}
        }
    }
    assert!(saw_message);
    assert_eq!(statuses, [chat4all_client::MessageStatus::Delivered]);

    // While alice is away, bob reads it: she gets READ once, from history, when she is back.
    proxy.cut();
    let read = bob.read_up_to("ticks", 1).await.unwrap();
    assert_eq!(read.up_to_seq, 1);
    let detail = bob.message(&sent.message_id).await.unwrap();
    assert_eq!(detail.message.status, chat4all_client::MessageStatus::Read);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore(None);
    let update = loop {
        match next_event(&mut watch).await {
            Event::Status(update) => break update,
            Event::Message { message, .. } => panic!("a message again: {message:?}"),
            _ => {}
        }
    };
    assert_eq!(update.message_id, sent.message_id);
    assert_eq!(update.status, chat4all_client::MessageStatus::Read);
    assert_eq!(update.seq, Some(1));
    let extra = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            match watch.next().await {
                Some(Ok(Event::Status(u))) => return format!("{u:?}"),
                Some(Ok(Event::Message { message, .. })) => return format!("{message:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(extra.is_err(), "delivered twice: {extra:?}");
    drop(watch);
    app.stop().await;
}
