use super::{Action, decide, outcome};
use crate::ServiceError;
use crate::ids::{ConversationId, UserId};
use crate::model::{Conversation, ConversationKind, Group};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// A group created by `ann`, its only admin, with `members` in join order.
fn group(members: &[&str], max_members: u32) -> Group {
    Group {
        conversation: Conversation {
            conversation_id: ConversationId::parse("g").unwrap(),
            kind: ConversationKind::Group,
            name: Some("team".into()),
            members: members.iter().map(|m| user(m)).collect(),
            created_at: 1,
            created_by: user("ann"),
        },
        description: None,
        admins: vec![user("ann")],
        max_members,
        version: 7,
    }
}

fn refused(result: Result<Option<super::MembershipChange>, ServiceError>) -> ServiceError {
    result.expect_err("refused")
}

#[test]
fn only_admins_add_and_a_full_group_takes_nobody() {
    let g = group(&["ann", "bob"], 3);
    let change = decide(&g, &user("ann"), &Action::Add(user("cy")), 50)
        .unwrap()
        .unwrap();
    assert_eq!(
        (change.joined, change.from_version),
        (Some((user("cy"), 50)), 7)
    );
    assert!(matches!(
        refused(decide(&g, &user("bob"), &Action::Add(user("cy")), 50)),
        ServiceError::Forbidden(_)
    ));
    assert_eq!(
        decide(&g, &user("ann"), &Action::Add(user("bob")), 50).unwrap(),
        None
    );
    let full = group(&["ann", "bob", "cy"], 3);
    assert!(matches!(
        refused(decide(&full, &user("ann"), &Action::Add(user("dee")), 50)),
        ServiceError::Conflict(_)
    ));
}

#[test]
fn members_leave_admins_remove_and_the_creator_stays_unless_they_leave() {
    let g = group(&["ann", "bob", "cy"], 10);
    let leave = decide(&g, &user("bob"), &Action::Remove(user("bob")), 0)
        .unwrap()
        .unwrap();
    assert_eq!(leave.left, Some(user("bob")));
    assert!(matches!(
        refused(decide(&g, &user("bob"), &Action::Remove(user("cy")), 0)),
        ServiceError::Forbidden(_)
    ));
    let mut two_admins = g.clone();
    two_admins.admins.push(user("bob"));
    assert!(matches!(
        refused(decide(
            &two_admins,
            &user("bob"),
            &Action::Remove(user("ann")),
            0
        )),
        ServiceError::Forbidden(_)
    ));
    assert!(matches!(
        refused(decide(&g, &user("ann"), &Action::Remove(user("zed")), 0)),
        ServiceError::NotFound(_)
    ));
    let creator_leaves = decide(&g, &user("ann"), &Action::Remove(user("ann")), 0)
        .unwrap()
        .unwrap();
    assert_eq!(creator_leaves.left, Some(user("ann")));
}

#[test]
fn the_last_admin_leaving_hands_admin_to_the_oldest_remaining_member() {
    let g = group(&["ann", "cy", "bob"], 10);
    let action = Action::Remove(user("ann"));
    let change = decide(&g, &user("ann"), &action, 0).unwrap().unwrap();
    assert_eq!(change.admins, vec![user("cy")], "cy joined before bob");
    let after = outcome(g.clone(), change, &action);
    assert_eq!(after.handed_over_to, Some(user("cy")));
    assert_eq!(
        after.group.conversation.members,
        vec![user("cy"), user("bob")]
    );
    assert_eq!(after.group.version, 8);

    let mut two_admins = g;
    two_admins.admins.push(user("bob"));
    let change = decide(&two_admins, &user("ann"), &action, 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        change.admins,
        vec![user("bob")],
        "another admin remains: no hand-over"
    );
}

#[test]
fn admins_promote_members_only() {
    let g = group(&["ann", "bob"], 10);
    let change = decide(&g, &user("ann"), &Action::Promote(user("bob")), 0)
        .unwrap()
        .unwrap();
    assert_eq!(change.admins, vec![user("ann"), user("bob")]);
    assert_eq!(
        decide(&g, &user("ann"), &Action::Promote(user("ann")), 0).unwrap(),
        None
    );
    assert!(matches!(
        refused(decide(&g, &user("bob"), &Action::Promote(user("bob")), 0)),
        ServiceError::Forbidden(_)
    ));
    assert!(matches!(
        refused(decide(&g, &user("ann"), &Action::Promote(user("zed")), 0)),
        ServiceError::Unprocessable(_)
    ));
}
