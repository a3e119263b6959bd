//! Idempotency-Key reservations.

use crate::ids::{ConversationId, IdempotencyKey, MessageId, UserId};
use crate::ports::{IdempotentRequest, Stores};

pub(super) async fn idempotency_keys(stores: &Stores) {
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
    let lookup = |key: IdempotencyKey, not_before| {
        let user = user.clone();
        async move {
            stores
                .idempotency
                .idempotent_request(&user, &key, not_before)
                .await
                .unwrap()
        }
    };
    assert_eq!(lookup(key.clone(), 0).await, Some(first.clone()));
    assert_eq!(
        lookup(IdempotencyKey::parse("k-other").unwrap(), 0).await,
        None
    );
    assert_eq!(
        lookup(key.clone(), i64::MAX).await,
        None,
        "a reservation older than the bound is not in force"
    );
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
