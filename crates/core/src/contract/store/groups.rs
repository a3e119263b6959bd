//! The store contract for groups and read receipts: a group is saved whole with its conversation, membership
//! changes are compare-and-set on the group's version, receipts never move back.

use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, ConversationKind, Group, ReadReceipt};
use crate::ports::{MembershipChange, Stores};

/// Runs the group and receipt checks against a store (part of `contract::store::run_all`).
pub(super) async fn run_all(stores: &Stores) {
    groups_change_membership_by_compare_and_set(stores).await;
    receipts_only_move_forward(stores).await;
}

async fn groups_change_membership_by_compare_and_set(stores: &Stores) {
    let mut people: Vec<UserId> = (0..3).map(|_| UserId::generate()).collect();
    people.sort_unstable();
    let (ann, bob, cy) = (&people[0], &people[1], &people[2]);
    let group = Group {
        conversation: Conversation {
            conversation_id: ConversationId::parse("group-1").unwrap(),
            kind: ConversationKind::Group,
            name: Some("team".into()),
            members: vec![ann.clone(), bob.clone()],
            created_at: 10,
            created_by: ann.clone(),
        },
        description: Some("the team".into()),
        admins: vec![ann.clone()],
        max_members: 3,
        version: 0,
    };
    let id = &group.conversation.conversation_id;
    assert!(stores.groups.insert_group(&group).await.expect("insert"));
    assert!(
        !stores.groups.insert_group(&group).await.expect("insert"),
        "an id is taken once"
    );
    assert_eq!(
        stores.groups.group(id).await.expect("load"),
        Some(group.clone())
    );
    assert_eq!(
        stores.conversations.conversation(id).await.expect("load"),
        Some(group.conversation.clone()),
        "a group is a conversation"
    );
    let plain = ConversationId::parse("not-a-group").unwrap();
    assert_eq!(stores.groups.group(&plain).await.expect("load"), None);

    // cy joins later than the others, so comes last in join order; ann leaves and bob becomes admin, at once.
    let join = MembershipChange {
        group_id: id.clone(),
        from_version: 0,
        joined: Some((cy.clone(), 20)),
        left: None,
        admins: vec![ann.clone()],
    };
    assert!(stores.groups.save_membership(&join).await.expect("save"));
    assert!(
        !stores.groups.save_membership(&join).await.expect("save"),
        "decided from a stale version"
    );
    let leave = MembershipChange {
        group_id: id.clone(),
        from_version: 1,
        joined: None,
        left: Some(ann.clone()),
        admins: vec![bob.clone()],
    };
    assert!(stores.groups.save_membership(&leave).await.expect("save"));
    let after = stores.groups.group(id).await.expect("load").expect("found");
    assert_eq!(after.conversation.members, vec![bob.clone(), cy.clone()]);
    assert_eq!(
        stores.conversations.conversation(id).await.expect("load"),
        Some(after.conversation.clone()),
        "the conversation's members follow the group's changes"
    );
    assert_eq!((after.admins, after.version), (vec![bob.clone()], 2));
    assert_eq!(after.description.as_deref(), Some("the team"));
}

async fn receipts_only_move_forward(stores: &Stores) {
    let conversation = ConversationId::parse("read-1").unwrap();
    let (ann, bob) = (UserId::generate(), UserId::generate());
    let receipt = |user: &UserId, up_to_seq: u64, read_at: i64| ReadReceipt {
        conversation_id: conversation.clone(),
        user_id: user.clone(),
        up_to_seq,
        read_at,
    };
    let advance =
        |r: ReadReceipt| async move { stores.receipts.advance_receipt(&r).await.expect("advance") };
    assert_eq!(advance(receipt(&ann, 3, 100)).await, None);
    assert_eq!(
        advance(receipt(&ann, 2, 110)).await,
        Some(receipt(&ann, 3, 100))
    );
    assert_eq!(
        advance(receipt(&ann, 5, 120)).await,
        Some(receipt(&ann, 3, 100))
    );
    assert_eq!(advance(receipt(&bob, 1, 130)).await, None);
    let load = |conversations: Vec<ConversationId>| async move {
        let mut found = stores
            .receipts
            .receipts(&conversations)
            .await
            .expect("load");
        found.sort_by_key(|r| r.read_at);
        found
    };
    assert_eq!(
        load(vec![conversation.clone()]).await,
        vec![receipt(&ann, 5, 120), receipt(&bob, 1, 130)]
    );
    let (other, third) = (
        ConversationId::parse("read-2").unwrap(),
        ConversationId::parse("read-3").unwrap(),
    );
    assert!(load(vec![other.clone()]).await.is_empty());
    let elsewhere = ReadReceipt {
        conversation_id: third.clone(),
        ..receipt(&bob, 7, 140)
    };
    assert_eq!(advance(elsewhere.clone()).await, None);
    assert_eq!(
        load(vec![conversation.clone(), other, third]).await,
        vec![receipt(&ann, 5, 120), receipt(&bob, 1, 130), elsewhere],
        "one query answers for several conversations"
    );
    assert!(load(Vec::new()).await.is_empty());
}
