//! The typed client against the real server: auth, messages and history paging, receipts, conversations,
//! groups, identities, files.

mod common;

use chat4all_client::{
    Client, Error, HistoryQuery, MessageStatus, NewConversation, NewGroup, NewMessage, Order,
};
use common::{Typed, bytes, sha256, spawn_app, wait_for_history};
use futures::StreamExt;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let client = app.client();
    let user = client
        .register("alice", "alice-password", Some("alice@example.com"))
        .await
        .unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));

    let taken = client
        .register("alice", "another-password", None)
        .await
        .unwrap_err();
    assert_eq!(taken.status(), Some(409), "{taken}");
    assert!(!taken.detail().unwrap().is_empty());

    let refused = client.login("alice", "wrong-password").await.unwrap_err();
    assert!(refused.is_unauthorized(), "{refused}");
    assert!(client.token().is_none());

    // No token: refused locally, as a 401.
    let anonymous = client.message("nope").await.unwrap_err();
    assert!(matches!(anonymous, Error::NotLoggedIn));

    let token = client.login("alice", "alice-password").await.unwrap();
    assert_eq!(token.user_id, user.user_id);
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(client.token().as_deref(), Some(token.access_token.as_str()));

    let missing = client.message("no-such-message").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    match &missing {
        Error::Api { problem, .. } => assert_eq!(problem.as_ref().unwrap().status, 404),
        other => panic!("not an API error: {other}"),
    }

    let forged = Client::new(&app.url("")).unwrap().with_token("not-a-jwt");
    let e = forged.conversations(None, None).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_history_paging_receipts_and_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, _) = app.logged_in("alice").await;
    let (bob, bob_id) = app.logged_in("bob").await;
    let created = alice
        .create_conversation(&NewConversation {
            conversation_id: Some("team".into()),
            kind: "group".into(),
            members: vec![bob_id.clone()],
            name: Some("Team".into()),
        })
        .await
        .unwrap();
    assert_eq!(created.members.len(), 2);

    let first = alice
        .send_message_with_key(&NewMessage::text("team", "m1"), "key-1")
        .await
        .unwrap();
    assert_eq!(first.status, MessageStatus::Accepted);
    let again = alice
        .send_message_with_key(&NewMessage::text("team", "m1"), "key-1")
        .await
        .unwrap();
    assert_eq!(
        again.message_id, first.message_id,
        "the same key sends once"
    );
    let reused = alice
        .send_message_with_key(&NewMessage::text("team", "other"), "key-1")
        .await
        .unwrap_err();
    assert_eq!(reused.status(), Some(422));
    for i in 2..=7 {
        alice
            .send_message(&NewMessage::text("team", format!("m{i}")))
            .await
            .unwrap();
    }
    wait_for_history(&bob, "team", 7).await;

    let page = bob
        .history(
            "team",
            &HistoryQuery {
                limit: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 3);
    assert!(page.pagination.has_more);
    assert_eq!(page.pagination.next_cursor, Some(3));
    let page = bob
        .history(
            "team",
            &HistoryQuery {
                limit: Some(2),
                after: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [4, 5]);
    let newest = bob
        .history(
            "team",
            &HistoryQuery {
                limit: Some(2),
                order: Some(Order::Desc),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(newest.messages[0].content, "m7");

    // The paging streams walk every page.
    let all: Vec<_> = bob.messages_after("team", 0, 2).collect().await;
    let contents: Vec<String> = all.into_iter().map(|m| m.unwrap().content).collect();
    assert_eq!(contents, ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    let tail: Vec<_> = bob.messages_after("team", 5, 100).collect().await;
    assert_eq!(tail.len(), 2);
    let back: Vec<u64> = bob
        .messages_before("team", Some(4), 2)
        .map(|m| m.unwrap().seq)
        .collect()
        .await;
    assert_eq!(back, [3, 2, 1]);

    // Receipts: bob reads everything; m1 becomes READ once delivered.
    let mut detail = alice.message(&first.message_id).await.unwrap();
    for _ in 0..100 {
        if detail.message.status == MessageStatus::Delivered {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        detail = alice.message(&first.message_id).await.unwrap();
    }
    assert_eq!(detail.message.status, MessageStatus::Delivered);
    let receipt = bob.read_up_to("team", 7).await.unwrap();
    assert_eq!(receipt.up_to_seq, 7);
    let detail = alice.message(&first.message_id).await.unwrap();
    assert_eq!(detail.read_by, std::slice::from_ref(&bob_id));
    assert!(!detail.status_history.is_empty());
    let read = bob.mark_read(&first.message_id).await.unwrap();
    assert_eq!(read.message_id, first.message_id);
    let beyond = bob.read_up_to("team", 99).await.unwrap_err();
    assert_eq!(beyond.status(), Some(400));

    // Conversations, paged by keyset cursor.
    for i in 0..3 {
        alice
            .send_message(&NewMessage::text(format!("solo-{i}"), "note"))
            .await
            .unwrap();
    }
    wait_for_history(&alice, "solo-2", 1).await;
    let page = alice.conversations(Some(2), None).await.unwrap();
    assert_eq!(page.conversations.len(), 2);
    let cursor = page.next_cursor.clone().expect("a second page");
    let rest = alice.conversations(Some(2), Some(&cursor)).await.unwrap();
    assert_eq!(rest.conversations.len(), 2);
    let all = alice.all_conversations().await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .any(|c| c.conversation_id == "team" && c.kind == "group")
    );

    let outsider = bob
        .history("solo-0", &HistoryQuery::default())
        .await
        .unwrap_err();
    assert_eq!(outsider.status(), Some(403));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_and_managed() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, alice_id) = app.logged_in("alice").await;
    let (bob, bob_id) = app.logged_in("bob").await;
    let (_carol, carol_id) = app.logged_in("carol").await;
    let group = alice
        .create_group(&NewGroup {
            name: "Friends".into(),
            description: Some("weekend plans".into()),
            initial_members: vec![bob_id.clone()],
        })
        .await
        .unwrap();
    assert_eq!(group.member_ids, [alice_id.clone(), bob_id.clone()]);
    assert_eq!(group.admin_ids, std::slice::from_ref(&alice_id));
    assert_eq!(group.group_id, group.conversation_id);

    let refused = bob
        .add_member(&group.group_id, &carol_id)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(403));
    let grown = alice.add_member(&group.group_id, &carol_id).await.unwrap();
    assert_eq!(grown.member_ids.len(), 3);
    let promoted = alice.promote_admin(&group.group_id, &bob_id).await.unwrap();
    assert!(promoted.admin_ids.contains(&bob_id));
    bob.remove_member(&group.group_id, &carol_id).await.unwrap();
    let shown = bob.group(&group.group_id).await.unwrap();
    assert_eq!(shown.member_ids, [alice_id, bob_id]);
    assert_eq!(shown.description.as_deref(), Some("weekend plans"));
    let gone = bob.group("no-such-group").await.unwrap_err();
    assert!(gone.is_not_found());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_linked_listed_and_unlinked() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, alice_id) = app.logged_in("alice").await;
    let (bob, _) = app.logged_in("bob").await;
    let linked = alice
        .link_identity("whatsapp", "+5511999990000", Some(true))
        .await
        .unwrap();
    assert_eq!(linked.user_id, alice_id);
    assert!(linked.preferred);
    alice
        .link_identity("instagram", "@alice", None)
        .await
        .unwrap();
    let taken = bob
        .link_identity("whatsapp", "+5511999990000", None)
        .await
        .unwrap_err();
    assert_eq!(taken.status(), Some(409));
    let bad = bob
        .link_identity("whatsapp", "not-a-number", None)
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
    let list = alice.identities().await.unwrap();
    assert!(
        list.windows(2).all(|w| w[0].linked_at <= w[1].linked_at),
        "oldest first: {list:?}"
    );
    let mut values: Vec<&str> = list.iter().map(|i| i.value.as_str()).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        ["+5511999990000", "@alice"],
        "both linked within one millisecond may tie"
    );
    // The `+` travels percent-encoded in the path.
    let unlinked = alice
        .unlink_identity("whatsapp", "+5511999990000")
        .await
        .unwrap();
    assert!(unlinked.unlinked);
    let again = alice
        .unlink_identity("whatsapp", "+5511999990000")
        .await
        .unwrap_err();
    assert!(again.is_not_found());
    assert_eq!(alice.identities().await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_and_download_byte_exact_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, _) = app.logged_in("alice").await;
    let (bob, bob_id) = app.logged_in("bob").await;
    alice
        .create_conversation(&NewConversation {
            conversation_id: Some("files".into()),
            kind: "direct".into(),
            members: vec![bob_id],
            name: None,
        })
        .await
        .unwrap();
    let data = bytes(3 * 1024 * 1024 + 17, 7);
    let local = dir.path().join("report.bin");
    std::fs::write(&local, &data).unwrap();

    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let stored = alice
        .upload_file(&local, "files", move |sent, total| {
            seen.lock().unwrap().push((sent, total))
        })
        .await
        .unwrap();
    let calls = calls.lock().unwrap().clone();
    assert!(calls.len() > 1, "progress is reported as bytes leave");
    assert_eq!(
        *calls.last().unwrap(),
        (data.len() as u64, data.len() as u64)
    );
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(stored.size_bytes, data.len() as u64);
    assert_eq!(stored.filename, "report.bin");
    assert_eq!(stored.checksum, format!("sha256:{}", sha256(&data)));

    // The file goes with a message; bob downloads it into memory, then into a file.
    let mut message = NewMessage::text("files", "the report");
    message.file_id = Some(stored.file_id.clone());
    alice.send_message(&message).await.unwrap();
    wait_for_history(&bob, "files", 1).await;
    let history = bob
        .history("files", &HistoryQuery::default())
        .await
        .unwrap();
    let meta = history.messages[0].file_metadata.as_ref().unwrap();
    assert_eq!(meta.checksum, stored.checksum);

    let mut received = Vec::new();
    let mut last = (0, None);
    let count = bob
        .download_to(&stored.file_id, &mut received, |got, total| {
            last = (got, total)
        })
        .await
        .unwrap();
    assert_eq!(count, data.len() as u64);
    assert_eq!(last, (data.len() as u64, Some(data.len() as u64)));
    assert!(received == data, "byte-exact");
    let target = dir.path().join("copy.bin");
    bob.download_file(&stored.file_id, &target, |_, _| {})
        .await
        .unwrap();
    assert!(std::fs::read(&target).unwrap() == data);
    let link = bob.download_link(&stored.file_id).await.unwrap();
    assert_eq!(link.size_bytes, data.len() as u64);
    assert!(link.download_url.contains("signature="));

    let (carol, _) = app.logged_in("carol").await;
    let hidden = carol.download_link(&stored.file_id).await.unwrap_err();
    assert!(hidden.is_not_found());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumable_uploads_send_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (alice, _) = app.logged_in("alice").await;
    alice
        .send_message(&NewMessage::text("big", "here it comes"))
        .await
        .unwrap();
    wait_for_history(&alice, "big", 1).await;
    let data = bytes(1024 * 1024 + 5, 11);
    let local = dir.path().join("big.bin");
    std::fs::write(&local, &data).unwrap();

    // An interrupted upload: the session exists and holds its middle chunk.
    let session = alice
        .create_upload(&chat4all_client::NewUpload {
            conversation_id: "big".into(),
            filename: "big.bin".into(),
            size_bytes: data.len() as u64,
            ..Default::default()
        })
        .await
        .unwrap();
    let middle = 300_000..600_000;
    let state = alice
        .upload_chunk(
            &session.upload_id,
            middle.start as u64,
            data[middle.clone()].to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(state.received_bytes, 300_000);
    let incomplete = alice.complete_upload(&session.upload_id).await.unwrap_err();
    assert_eq!(incomplete.status(), Some(409));

    let mut session_seen = String::new();
    let mut steps = Vec::new();
    let stored = alice
        .upload_resumable(
            &local,
            "big",
            Some(&session.upload_id),
            Some(256 * 1024),
            |id| session_seen = id.to_owned(),
            |held, total| steps.push((held, total)),
        )
        .await
        .unwrap();
    assert_eq!(session_seen, session.upload_id);
    assert_eq!(
        steps.first().unwrap().0,
        300_000,
        "starts from what the server holds"
    );
    assert_eq!(
        *steps.last().unwrap(),
        (data.len() as u64, data.len() as u64)
    );
    assert_eq!(stored.checksum, format!("sha256:{}", sha256(&data)));
    let mut received = Vec::new();
    alice
        .download_to(&stored.file_id, &mut received, |_, _| {})
        .await
        .unwrap();
    assert!(received == data);

    // A fresh session in one call.
    let stored = alice
        .upload_resumable(&local, "big", None, None, |_| {}, |_, _| {})
        .await
        .unwrap();
    assert_eq!(stored.size_bytes, data.len() as u64);
    app.stop().await;
}
