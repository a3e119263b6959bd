//! The store contract, by aggregate: accounts and conversations here; messages, files, idempotency keys, control
//! documents, identities, groups and read receipts in the modules below.

mod control;
mod files;
mod groups;
mod idempotency;
mod identities;
mod messages;

use crate::events::MessageAccepted;
use crate::ids::{ConversationId, Email, MessageId, UserId, Username};
use crate::model::{Conversation, ConversationKind, Message, User};
use crate::ports::{ConversationCursor, Recorded, StoreError, Stores};

/// Runs every check against a fresh, empty store.
pub async fn run_all(stores: Stores) {
    users_are_unique(&stores).await;
    conversations_keep_their_members(&stores).await;
    messages::messages_get_gap_free_idempotent_seq(&stores).await;
    messages::status_writes_compare_and_set(&stores).await;
    messages::recording_saves_the_settling_change_in_the_same_write(&stores).await;
    messages::history_pages(&stores).await;
    messages::readings_count_what_others_sent_past_the_receipt(&stores).await;
    idempotency::idempotency_keys(&stores).await;
    files::files_and_attachments(&stores).await;
    files::resumable_upload_ranges(&stores).await;
    control::control_documents_expire_and_replace(&stores).await;
    groups::run_all(&stores).await;
    identities::identities_belong_to_one_user_with_one_preferred(&stores).await;
}

pub(super) fn user(name: &str, email: Option<&str>) -> User {
    User {
        user_id: UserId::generate(),
        username: Username::parse(name).unwrap(),
        email: email.map(|e| Email::parse(e).unwrap()),
        created_at: 1,
    }
}

pub(super) fn conversation(id: &str, members: &[&UserId]) -> Conversation {
    Conversation {
        conversation_id: ConversationId::parse(id).unwrap(),
        kind: ConversationKind::Group,
        name: Some("team".into()),
        members: members.iter().map(|m| (*m).clone()).collect(),
        created_at: 1,
        created_by: members[0].clone(),
    }
}

pub(super) fn accepted(conversation: &str, sender: &UserId, content: &str) -> MessageAccepted {
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
pub(super) async fn record(stores: &Stores, messages: &[MessageAccepted]) -> Vec<Message> {
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
            .existing_users(&[ana.user_id.clone(), ghost.clone()])
            .await
            .expect("exists"),
        vec![ana.user_id.clone()]
    );
    assert_eq!(
        stores
            .accounts
            .users(&[ghost, ana.user_id.clone()])
            .await
            .expect("users"),
        vec![ana]
    );
    assert!(stores.accounts.users(&[]).await.expect("none").is_empty());
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
