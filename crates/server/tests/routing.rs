//! The router and the event trail, on the real embedded adapters.

mod common;

use chat4all_core::envelope::{HEADER_CORRELATION_ID, HEADER_EVENT_TYPE, decode, encode};
use chat4all_core::events::{Event, MessageAccepted, MessageStored, StatusUpdate, Topics};
use chat4all_core::ids::{ConversationId, CorrelationId, MessageId, UserId};
use chat4all_core::ports::{EventLog, OutgoingRecord, Stores};
use chat4all_core::services::changes::{Changes, Notifications};
use chat4all_core::services::dead_letters::HEADER_REASON;
use chat4all_core::services::routing::Router;
use chat4all_core::status::MessageStatus;
use chat4all_embedded::{LogOptions, SegmentLog, SqliteStore};
use common::{all_have_status, drain, drain_tail, read_topic, spawn_app};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

fn accepted(content: &str) -> MessageAccepted {
    MessageAccepted {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse("c1").unwrap(),
        sender_id: UserId::generate(),
        recipient_id: None,
        content: content.into(),
        file_id: None,
        expires_at: None,
        via: None,
        timestamp: 1,
    }
}

/// A router on the embedded log and store in `dir`, with the WhatsApp channel.
fn embedded_router(dir: &Path) -> (Arc<dyn EventLog>, Stores, Topics, Router) {
    let log: Arc<dyn EventLog> =
        Arc::new(SegmentLog::open(&dir.join("events"), LogOptions::default()).unwrap());
    let stores = Stores::all_in(Arc::new(SqliteStore::open(&dir.join("store.db")).unwrap()));
    let topics = Topics::default();
    let router = Router::new(
        &stores,
        log.clone(),
        topics.clone(),
        ["whatsapp".to_owned()],
    );
    (log, stores, topics, router)
}

#[tokio::test]
async fn poison_events_are_dead_lettered_and_routing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stores, topics, router) = embedded_router(dir.path());

    let cid = CorrelationId::parse("poison-test").unwrap();
    let mut undecodable = encode(&accepted("x"), &cid);
    undecodable.payload = b"{\"message_id\": 42".to_vec();
    let headerless = OutgoingRecord {
        key: "c1".into(),
        headers: vec![],
        payload: b"garbage".to_vec(),
    };
    let records = vec![
        encode(&accepted("first"), &cid),
        undecodable,
        headerless,
        encode(&accepted("second"), &cid),
    ];
    let partition = log.append_batch(&topics.messages, records).await.unwrap()[0].partition;

    let mut consumer = log
        .consumer("router", &topics.messages, partition)
        .await
        .unwrap();
    let batch = drain(&mut consumer).await;
    assert_eq!(batch.len(), 4);
    let outcome = router
        .route_messages(&batch)
        .await
        .expect("a poison event does not fail the batch");
    assert_eq!((outcome.routed, outcome.dead_lettered), (2, 2));

    let stored = stores
        .messages
        .history(
            &ConversationId::parse("c1").unwrap(),
            &chat4all_core::model::HistoryQuery {
                limit: 10,
                offset: 0,
                after: None,
                before: None,
                ascending: true,
            },
        )
        .await
        .unwrap();
    let contents: Vec<_> = stored
        .messages
        .iter()
        .map(|m| (m.seq, m.content.as_str(), m.status.as_str()))
        .collect();
    assert_eq!(
        contents,
        [(1, "first", "DELIVERED"), (2, "second", "DELIVERED")]
    );

    let dead = read_topic(log.as_ref(), &topics.dead_letters).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]
            .header(HEADER_REASON)
            .unwrap()
            .contains("undecodable"),
        "{:?}",
        dead[0].headers
    );
    assert_eq!(
        dead[0].header(HEADER_CORRELATION_ID),
        Some("poison-test"),
        "original headers are kept"
    );
    assert!(
        dead[1]
            .header(HEADER_REASON)
            .unwrap()
            .contains("expected event type")
    );
    assert_eq!(dead[1].payload, b"garbage");
}

#[tokio::test]
async fn a_batch_replayed_after_its_router_died_before_publishing_is_announced_with_the_status_it_reached()
 {
    let dir = tempfile::tempdir().unwrap();
    let (log, stores, topics, router) = embedded_router(dir.path());
    let message = accepted("hello");
    let cid = CorrelationId::parse("replayed").unwrap();

    // The first router stores the message and settles it, then dies before publishing either change.
    let changes = Changes::new(&stores, log.clone(), topics.clone());
    let mut unpublished = Notifications::default();
    let delivered = StatusUpdate::now(message.message_id.clone(), MessageStatus::Delivered, None);
    let recorded = changes
        .record(
            std::slice::from_ref(&message),
            std::slice::from_ref(&cid),
            [(message.message_id.clone(), delivered)].into(),
            &mut unpublished,
        )
        .await
        .unwrap();
    assert!(recorded[0].settled.is_some(), "settled as it was stored");
    drop(unpublished);
    assert!(
        read_topic(log.as_ref(), &topics.notifications)
            .await
            .is_empty()
    );

    // The survivor consumes the record, which the first router had not committed.
    let partition = log
        .append_batch(&topics.messages, vec![encode(&message, &cid)])
        .await
        .unwrap()[0]
        .partition;
    let mut consumer = log
        .consumer("router", &topics.messages, partition)
        .await
        .unwrap();
    router
        .route_messages(&drain(&mut consumer).await)
        .await
        .unwrap();
    let notes = read_topic(log.as_ref(), &topics.notifications).await;
    assert_eq!(notes.len(), 1, "one announcement, no second status change");
    assert_eq!(
        notes[0].header(HEADER_EVENT_TYPE),
        Some(MessageStored::TYPE)
    );
    let announced: MessageStored = decode(&notes[0]).unwrap();
    assert_eq!(
        (announced.message_id, announced.seq, announced.status),
        (message.message_id, 1, MessageStatus::Delivered)
    );
}

#[tokio::test]
async fn the_correlation_id_travels_from_the_request_to_the_channel_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (_, alice) = app.user("alice").await;
    let body = json!({"conversation_id": "trace", "content": "follow me", "recipient_id": "whatsapp:+5511999990000"});
    let reply = app
        .request(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(&body.to_string()),
            &[("x-correlation-id", "trace-123")],
        )
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.headers["x-correlation-id"], "trace-123");
    app.wait_for_history(&alice, "trace", |m| all_have_status(m, 1, "DELIVERED"))
        .await;
    app.stop().await;

    let log = SegmentLog::open(&dir.path().join("events"), LogOptions::default()).unwrap();
    let topics = Topics::default();
    for topic in [
        topics.messages.clone(),
        topics.outbound("whatsapp"),
        topics.status_updates.clone(),
    ] {
        let records = read_topic(&log, &topic).await;
        assert_eq!(records.len(), 1, "{topic}");
        assert_eq!(
            records[0].header(HEADER_CORRELATION_ID),
            Some("trace-123"),
            "{topic} lost the correlation id"
        );
        assert!(records[0].header(HEADER_EVENT_TYPE).is_some());
    }
    log.close().await;
}

#[tokio::test]
async fn every_applied_change_is_published_once_on_the_notifications_topic() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let mut notifications = app
        .log
        .tail(&Topics::default().notifications)
        .await
        .unwrap();
    let (alice_id, alice) = app.user("alice").await;
    let (bob_id, bob) = app.user("bob").await;
    let created = app
        .post(
            "/v1/conversations",
            Some(&alice),
            &json!({"conversation_id": "news", "type": "group", "members": [bob_id]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sent = app
        .request(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&alice),
            Some(&json!({"conversation_id": "news", "content": "hello"}).to_string()),
            &[("x-correlation-id", "send-1")],
        )
        .await;
    assert_eq!(sent.status, 202);
    let message_id = sent.json()["message_id"].as_str().unwrap().to_owned();
    app.wait_for_history(&bob, "news", |m| all_have_status(m, 1, "DELIVERED"))
        .await;
    let read_path = format!("/v1/messages/{message_id}/read");
    for _ in 0..2 {
        // The second READ changes nothing, so it publishes nothing.
        let read = app
            .request(
                reqwest::Method::POST,
                &read_path,
                Some(&bob),
                None,
                &[("x-correlation-id", "read-1")],
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.text);
    }
    app.stop().await;
    let notes = drain_tail(&mut notifications).await;
    let seen: Vec<_> = notes
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            (
                r.header(HEADER_EVENT_TYPE).unwrap().to_owned(),
                body["status"].as_str().unwrap_or("-").to_owned(),
                r.header(HEADER_CORRELATION_ID).unwrap().to_owned(),
                r.key.clone(),
            )
        })
        .collect();
    let expect = |kind: &str, status: &str, correlation: &str| {
        (
            kind.to_owned(),
            status.to_owned(),
            correlation.to_owned(),
            "news".to_owned(),
        )
    };
    assert_eq!(
        seen,
        [
            expect("message.stored", "SENT", "send-1"),
            expect("message.status_changed", "DELIVERED", "send-1"),
            expect("message.status_changed", "READ", "read-1"),
        ]
    );
    let stored: serde_json::Value = serde_json::from_slice(&notes[0].payload).unwrap();
    assert_eq!(
        (
            stored["seq"].as_u64(),
            stored["content"].as_str(),
            stored["sender_id"].as_str()
        ),
        (Some(1), Some("hello"), Some(alice_id.as_str()))
    );
}
