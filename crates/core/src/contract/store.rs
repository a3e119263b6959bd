//! The store contract: uniqueness, gap-free idempotent `seq`, compare-and-set status writes, paging, idempotency
//! keys, identities; groups and read receipts in `contract::groups`.

use crate::events::MessageAccepted;
use crate::ids::{
    ConversationId, Email, FileId, IdempotencyKey, MessageId, UploadId, UserId, Username,
};
use crate::model::{
    Conversation, ConversationKind, FileMeta, HistoryQuery, Identity, Message, StatusChange,
    UploadSession, User,
};
use crate::ports::{
    ConversationCursor, IdempotentRequest, Linked, Recorded, StatusWrite, StoreError, Stores,
};
use crate::status::MessageStatus;

/// Runs every check against a fresh, empty store.
pub async fn run_all(stores: Stores) {
    users_are_unique(&stores).await;
    conversations_keep_their_members(&stores).await;
    messages_get_gap_free_idempotent_seq(&stores).await;
    status_writes_compare_and_set(&stores).await;
    history_pages(&stores).await;
    idempotency_keys(&stores).await;
    files_and_attachments(&stores).await;
    resumable_upload_ranges(&stores).await;
    control_documents_expire_and_replace(&stores).await;
    super::groups::run_all(&stores).await;
    identities_belong_to_one_user_with_one_preferred(&stores).await;
}

fn user(name: &str, email: Option<&str>) -> User {
    User {
        user_id: UserId::generate(),
        username: Username::parse(name).unwrap(),
        email: email.map(|e| Email::parse(e).unwrap()),
        created_at: 1,
    }
}

fn conversation(id: &str, members: &[&UserId]) -> Conversation {
    Conversation {
        conversation_id: ConversationId::parse(id).unwrap(),
        kind: ConversationKind::Group,
        name: Some("team".into()),
        members: members.iter().map(|m| (*m).clone()).collect(),
        created_at: 1,
        created_by: members[0].clone(),
    }
}

fn accepted(conversation: &str, sender: &UserId, content: &str) -> MessageAccepted {
    MessageAccepted {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        sender_id: sender.clone(),
        recipient_id: None,
        content: content.into(),
        file_id: None,
        expires_at: None,
        via: None,
        timestamp: 1000,
    }
}

/// Records messages that must be stored (their conversation exists).
async fn record(stores: &Stores, messages: &[MessageAccepted]) -> Vec<Message> {
    stores
        .messages
        .record_messages(messages)
        .await
        .expect("record")
        .into_iter()
        .map(|r| match r {
            Recorded::Stored(m) => m,
            Recorded::NoConversation => {
                panic!("a message of an existing conversation was not stored")
            }
        })
        .collect()
}

/// `message` moved from its current status to `status` at `at`.
fn write(message: &Message, status: MessageStatus, at: i64) -> StatusWrite {
    let mut next = message.clone();
    next.status = status;
    next.delivered_at = Some(at);
    StatusWrite {
        from: message.status,
        message: next,
        change: StatusChange {
            status,
            at,
            detail: Some(format!("{status} detail")),
            correlation_id: Some("corr-1".into()),
        },
    }
}

async fn users_are_unique(stores: &Stores) {
    let ana = user("ana", Some("ana@example.com"));
    stores
        .accounts
        .insert_user(&ana, "hash-1")
        .await
        .expect("insert");
    let same_name = user("ana", None);
    assert!(
        matches!(stores.accounts.insert_user(&same_name, "h").await, Err(StoreError::Conflict(f)) if f == "username")
    );
    let same_email = user("ana2", Some("ana@example.com"));
    assert!(
        matches!(stores.accounts.insert_user(&same_email, "h").await, Err(StoreError::Conflict(f)) if f == "email")
    );
    let credentials = stores
        .accounts
        .user_credentials(&ana.username)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(credentials.user, ana);
    assert_eq!(credentials.password_hash, "hash-1");
    assert!(
        stores
            .accounts
            .user_credentials(&Username::parse("nobody").unwrap())
            .await
            .expect("lookup")
            .is_none()
    );
    let ghost = UserId::generate();
    assert_eq!(
        stores
            .accounts
            .existing_users(&[ana.user_id.clone(), ghost])
            .await
            .expect("exists"),
        vec![ana.user_id]
    );
}

async fn conversations_keep_their_members(stores: &Stores) {
    let (a, b) = (UserId::generate(), UserId::generate());
    let team = conversation("team-1", &[&a, &b]);
    assert!(
        stores
            .conversations
            .insert_conversation(&team)
            .await
            .expect("insert")
    );
    assert!(
        !stores
            .conversations
            .insert_conversation(&conversation("team-1", &[&b]))
            .await
            .expect("insert"),
        "an id is taken once"
    );
    assert_eq!(
        stores
            .conversations
            .conversation(&team.conversation_id)
            .await
            .expect("load"),
        Some(team.clone())
    );
    let list = |user: UserId, after: Option<ConversationCursor>, limit: u32| async move {
        stores
            .conversations
            .conversations_of(&user, after.as_ref(), limit)
            .await
            .expect("list")
    };
    assert_eq!(list(b.clone(), None, 10).await, vec![team]);
    assert!(list(UserId::generate(), None, 10).await.is_empty());

    // Keyset pages: newest first, ties on the creation time ordered by id, no gap and no repeat.
    let member = UserId::generate();
    let ids = ["page-c", "page-a", "page-b", "page-d"];
    for (id, created_at) in ids.iter().zip([5, 7, 7, 9]) {
        let mut c = conversation(id, &[&member]);
        c.created_at = created_at;
        stores
            .conversations
            .insert_conversation(&c)
            .await
            .expect("insert");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list(member.clone(), after.take(), 3).await;
        seen.extend(page.iter().map(|c| c.conversation_id.as_str().to_owned()));
        match page.last() {
            Some(last) if page.len() == 3 => {
                after = Some(ConversationCursor {
                    created_at: last.created_at,
                    conversation_id: last.conversation_id.clone(),
                })
            }
            _ => break,
        }
    }
    assert_eq!(seen, ["page-d", "page-a", "page-b", "page-c"]);
}

async fn messages_get_gap_free_idempotent_seq(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("seq-1", &[&sender]))
        .await
        .expect("insert");
    let first: Vec<_> = (0..5)
        .map(|i| accepted("seq-1", &sender, &format!("m{i}")))
        .collect();
    let stored = record(stores, &first).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(stored.iter().all(|m| m.status == MessageStatus::Sent));

    let mut redelivered = first[3..].to_vec();
    redelivered.push(accepted("seq-1", &sender, "m5"));
    let orphan = accepted("seq-2", &sender, "no such conversation");
    redelivered.push(orphan.clone());
    let again = stores
        .messages
        .record_messages(&redelivered)
        .await
        .expect("record");
    let seqs: Vec<_> = again
        .iter()
        .map(|r| match r {
            Recorded::Stored(m) => Some(m.seq),
            Recorded::NoConversation => None,
        })
        .collect();
    assert_eq!(
        seqs,
        [Some(4), Some(5), Some(6), None],
        "redelivery keeps seq; a message without its conversation is not stored"
    );
    assert_eq!(
        stores
            .messages
            .message(&orphan.message_id)
            .await
            .expect("message"),
        None
    );
    let page = stores
        .messages
        .history(&ConversationId::parse("seq-1").unwrap(), &query(100))
        .await
        .expect("history");
    assert_eq!(
        page.messages.len(),
        6,
        "a redelivered message is never duplicated"
    );
}

async fn status_writes_compare_and_set(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("status-1", &[&sender]))
        .await
        .expect("insert");
    let message = record(stores, &[accepted("status-1", &sender, "x")])
        .await
        .remove(0);
    let delivered = write(&message, MessageStatus::Delivered, 10);
    let stale = write(&message, MessageStatus::Failed, 11);
    let read = write(&delivered.message, MessageStatus::Read, 12);
    let saved = stores
        .messages
        .save_statuses(&[delivered.clone(), stale, read.clone()])
        .await
        .expect("save");
    assert_eq!(
        saved,
        [true, false, true],
        "a write decided from a status the message has left is refused"
    );
    let id = &message.message_id;
    let now = stores
        .messages
        .message(id)
        .await
        .expect("message")
        .expect("stored");
    assert_eq!(now, read.message, "the saved state is the last write's");

    let history = stores.messages.status_history(id).await.expect("history");
    let steps: Vec<_> = history.iter().map(|s| s.status).collect();
    assert_eq!(
        steps,
        [
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ]
    );
    assert_eq!(
        history[1], delivered.change,
        "a step keeps its detail and correlation"
    );

    let found = stores
        .messages
        .messages(&[id.clone(), MessageId::generate()])
        .await
        .expect("messages");
    assert_eq!(found, vec![now], "only existing messages are loaded");
}

fn query(limit: u32) -> HistoryQuery {
    HistoryQuery {
        limit,
        offset: 0,
        after: None,
        before: None,
        ascending: true,
    }
}

async fn history_pages(stores: &Stores) {
    let sender = UserId::generate();
    let batch: Vec<_> = (1..=10)
        .map(|i| accepted("paging", &sender, &i.to_string()))
        .collect();
    stores
        .conversations
        .insert_conversation(&conversation("paging", &[&sender]))
        .await
        .expect("insert");
    record(stores, &batch).await;
    let id = ConversationId::parse("paging").unwrap();
    let seqs = |page: crate::model::HistoryPage| {
        (
            page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            page.has_more,
        )
    };
    assert_eq!(
        seqs(stores.messages.history(&id, &query(4)).await.unwrap()),
        (vec![1, 2, 3, 4], true)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        after: Some(8),
                        ..query(4)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![9, 10], false)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        before: Some(4),
                        ascending: false,
                        ..query(2)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![3, 2], true)
    );
    assert_eq!(
        seqs(
            stores
                .messages
                .history(
                    &id,
                    &HistoryQuery {
                        offset: 9,
                        ..query(5)
                    }
                )
                .await
                .unwrap()
        ),
        (vec![10], false)
    );
}

async fn idempotency_keys(stores: &Stores) {
    let user = UserId::generate();
    let key = IdempotencyKey::parse("k-1").unwrap();
    let request = |fingerprint: &str, timestamp| IdempotentRequest {
        fingerprint: fingerprint.into(),
        message_id: MessageId::generate(),
        conversation_id: ConversationId::parse("c").unwrap(),
        timestamp,
        appended: false,
    };
    let first = request("body-1", 1_000);
    assert_eq!(
        stores
            .idempotency
            .reserve_idempotency_key(&user, &key, &first, 0)
            .await
            .unwrap(),
        first,
        "a new key is reserved"
    );
    let replay = stores
        .idempotency
        .reserve_idempotency_key(&user, &key, &request("body-2", 2_000), 0)
        .await
        .unwrap();
    assert_eq!(replay, first, "a live reservation wins over a new request");
    stores
        .idempotency
        .mark_idempotency_key_appended(&user, &key)
        .await
        .unwrap();
    assert!(
        stores
            .idempotency
            .reserve_idempotency_key(&user, &key, &request("body-1", 2_000), 0)
            .await
            .unwrap()
            .appended
    );
    let other_user = stores
        .idempotency
        .reserve_idempotency_key(&UserId::generate(), &key, &request("body-3", 2_000), 0)
        .await
        .unwrap();
    assert_eq!(other_user.fingerprint, "body-3", "keys are per user");
    let expired = request("body-4", 90_000);
    assert_eq!(
        stores
            .idempotency
            .reserve_idempotency_key(&user, &key, &expired, 5_000)
            .await
            .unwrap(),
        expired,
        "an expired key is reused"
    );
    assert_eq!(
        stores
            .idempotency
            .purge_idempotency_keys(10_000)
            .await
            .unwrap(),
        1,
        "purge drops what is older than its bound"
    );
}

fn file(conversation: &str, uploader: &UserId) -> FileMeta {
    FileMeta {
        file_id: FileId::generate(),
        conversation_id: ConversationId::parse(conversation).unwrap(),
        uploader_id: uploader.clone(),
        filename: "report.pdf".into(),
        size_bytes: 1234,
        mimetype: "application/pdf".into(),
        checksum: format!("sha256:{}", "ab".repeat(32)),
        object_key: format!("{conversation}/report.pdf"),
        uploaded_at: 5,
    }
}

async fn files_and_attachments(stores: &Stores) {
    let sender = UserId::generate();
    stores
        .conversations
        .insert_conversation(&conversation("files-1", &[&sender]))
        .await
        .expect("insert");
    let report = file("files-1", &sender);
    stores
        .files
        .insert_file(&report)
        .await
        .expect("insert file");
    assert_eq!(
        stores.files.file(&report.file_id).await.expect("file"),
        Some(report.clone())
    );
    assert_eq!(
        stores.files.file(&FileId::generate()).await.expect("file"),
        None
    );

    let mut with_file = accepted("files-1", &sender, "see attached");
    with_file.file_id = Some(report.file_id.clone());
    let stored = record(stores, std::slice::from_ref(&with_file))
        .await
        .remove(0);
    assert_eq!(
        stored.attachment.as_ref(),
        Some(&report),
        "a recorded message carries its attachment"
    );
    let read_back = stores
        .messages
        .message(&with_file.message_id)
        .await
        .expect("message")
        .expect("found");
    assert_eq!(read_back.attachment, Some(report.clone()));

    let key = IdempotencyKey::parse("upload-1").unwrap();
    let first = stores
        .idempotency
        .reserve_file_idempotency_key(&sender, &key, "fp-1", &report.file_id, 0)
        .await
        .unwrap();
    assert_eq!(first, ("fp-1".to_owned(), report.file_id.clone()));
    let again = stores
        .idempotency
        .reserve_file_idempotency_key(&sender, &key, "fp-2", &FileId::generate(), 0)
        .await
        .unwrap();
    assert_eq!(again, first, "a live file key keeps its first file");
}

async fn resumable_upload_ranges(stores: &Stores) {
    let session = UploadSession {
        upload_id: UploadId::generate(),
        conversation_id: ConversationId::parse("uploads-1").unwrap(),
        uploader_id: UserId::generate(),
        filename: "big.bin".into(),
        mimetype: "application/octet-stream".into(),
        size_bytes: 100,
        checksum: None,
        created_at: 1,
        expires_at: 10,
    };
    stores
        .files
        .insert_upload(&session)
        .await
        .expect("insert upload");
    assert_eq!(
        stores
            .files
            .upload(&session.upload_id)
            .await
            .expect("upload"),
        Some(session.clone())
    );
    let id = &session.upload_id;
    assert_eq!(
        stores.files.add_upload_range(id, 50, 100).await.unwrap(),
        [(50, 100)]
    );
    assert_eq!(
        stores.files.add_upload_range(id, 0, 20).await.unwrap(),
        [(0, 20), (50, 100)],
        "out of order"
    );
    assert_eq!(
        stores.files.add_upload_range(id, 10, 20).await.unwrap(),
        [(0, 20), (50, 100)],
        "sent again"
    );
    assert_eq!(
        stores.files.add_upload_range(id, 20, 50).await.unwrap(),
        [(0, 100)],
        "ranges merge"
    );
    assert_eq!(stores.files.upload_ranges(id).await.unwrap(), [(0, 100)]);
    assert_eq!(
        stores.files.expired_uploads(10).await.unwrap(),
        vec![id.clone()]
    );
    assert!(stores.files.expired_uploads(9).await.unwrap().is_empty());
    stores.files.delete_upload(id).await.unwrap();
    assert_eq!(stores.files.upload(id).await.unwrap(), None);
    assert!(stores.files.upload_ranges(id).await.unwrap().is_empty());
}

async fn control_documents_expire_and_replace(stores: &Stores) {
    stores
        .control
        .put_control("fault/a", "1", 100)
        .await
        .expect("put");
    stores
        .control
        .put_control("fault/b", "2", 50)
        .await
        .expect("put");
    stores
        .control
        .put_control("other/a", "3", 100)
        .await
        .expect("put");
    let at = |now| async move {
        stores
            .control
            .controls("fault/", now)
            .await
            .expect("controls")
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(at(10).await, [pair("fault/a", "1"), pair("fault/b", "2")]);
    assert_eq!(
        at(50).await,
        [pair("fault/a", "1")],
        "a document expires at its time"
    );
    stores
        .control
        .put_control("fault/a", "4", 200)
        .await
        .expect("put");
    assert_eq!(
        at(150).await,
        [pair("fault/a", "4")],
        "a put replaces the document and its expiry"
    );
    assert!(
        stores
            .control
            .controls("fault/x", 0)
            .await
            .expect("controls")
            .is_empty()
    );
}

fn identity(user: &UserId, platform: &str, value: &str, preferred: bool, at: i64) -> Identity {
    Identity {
        user_id: user.clone(),
        platform: platform.into(),
        value: value.into(),
        verified: false,
        preferred,
        linked_at: at,
    }
}

async fn identities_belong_to_one_user_with_one_preferred(stores: &Stores) {
    let store = &stores.identities;
    let (ana, bia) = (UserId::generate(), UserId::generate());
    let phone = identity(&ana, "whatsapp", "+5511000000001", true, 10);
    assert_eq!(
        store.link_identity(&phone, true).await.expect("link"),
        Linked::Created(phone.clone())
    );
    let again = identity(&ana, "whatsapp", "+5511000000001", false, 99);
    assert_eq!(
        store.link_identity(&again, false).await.expect("relink"),
        Linked::Existing(phone.clone()),
        "linking it again keeps it as it was"
    );
    let theft = identity(&bia, "whatsapp", "+5511000000001", false, 11);
    assert!(matches!(
        store.link_identity(&theft, false).await,
        Err(StoreError::Conflict(_))
    ));

    let handle = identity(&ana, "instagram", "@ana", true, 20);
    assert_eq!(
        store.link_identity(&handle, true).await.expect("link"),
        Linked::Created(handle.clone())
    );
    let listed = store.identities(&ana).await.expect("list");
    assert_eq!(
        listed,
        [
            Identity {
                preferred: false,
                ..phone.clone()
            },
            handle.clone()
        ],
        "oldest first, and a new preferred identity unsets the old one"
    );
    assert!(store.identities(&bia).await.expect("list").is_empty());
    let back = identity(&ana, "whatsapp", "+5511000000001", true, 30);
    store.link_identity(&back, true).await.expect("prefer");
    let preferred = store
        .preferred_identities(&[ana.clone(), bia.clone()])
        .await
        .expect("preferred");
    assert_eq!(preferred, [phone]);

    assert!(
        !store
            .unlink_identity(&bia, "whatsapp", "+5511000000001")
            .await
            .expect("unlink"),
        "only its holder unlinks it"
    );
    assert!(
        store
            .unlink_identity(&ana, "whatsapp", "+5511000000001")
            .await
            .expect("unlink")
    );
    assert!(
        !store
            .unlink_identity(&ana, "whatsapp", "+5511000000001")
            .await
            .expect("unlink")
    );
    let freed = identity(&bia, "whatsapp", "+5511000000001", true, 40);
    assert_eq!(
        store.link_identity(&freed, true).await.expect("link"),
        Linked::Created(freed.clone()),
        "an unlinked identity is free for another user"
    );
    assert!(
        store
            .preferred_identities(&[ana])
            .await
            .expect("preferred")
            .is_empty()
    );
}
