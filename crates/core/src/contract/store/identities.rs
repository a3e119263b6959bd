//! Identities: one user per identity, one preferred identity per user.

use crate::ids::UserId;
use crate::model::Identity;
use crate::ports::{Linked, StoreError, Stores};

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

pub(super) async fn identities_belong_to_one_user_with_one_preferred(stores: &Stores) {
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
