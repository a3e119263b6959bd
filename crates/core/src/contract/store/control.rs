//! Control documents between roles.

use crate::ports::Stores;

pub(super) async fn control_documents_expire_and_replace(stores: &Stores) {
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
