//! The SQLite store's groups: details and admins beside the conversation's rows, membership changes
//! compare-and-set on the group's version.

use super::SqliteStore;
use super::rows::{insert_conversation_rows, load_conversation, parsed};
use async_trait::async_trait;
use chat4all_core::ids::{ConversationId, UserId};
use chat4all_core::model::Group;
use chat4all_core::ports::{GroupStore, MembershipChange, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

#[async_trait]
impl GroupStore for SqliteStore {
    async fn insert_group(&self, group: &Group) -> Result<bool, StoreError> {
        let group = group.clone();
        self.write(move |conn| {
            let id = group.conversation.conversation_id.as_str();
            let taken = conn
                .prepare_cached("SELECT 1 FROM conversations WHERE conversation_id = ?1")?
                .exists([id])?;
            if taken {
                return Ok(false);
            }
            insert_conversation_rows(conn, &group.conversation)?;
            conn.prepare_cached(
                "INSERT INTO group_details (conversation_id, description, max_members, version) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, group.description, group.max_members, group.version as i64])?;
            replace_admins(conn, id, &group.admins)?;
            Ok(true)
        })
        .await
    }

    async fn group(&self, id: &ConversationId) -> Result<Option<Group>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let details = conn
                .prepare_cached(
                    "SELECT description, max_members, version FROM group_details WHERE conversation_id = ?1",
                )?
                .query_row([id.as_str()], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, u32>(1)?, r.get::<_, i64>(2)?))
                })
                .optional()?;
            let Some((description, max_members, version)) = details else {
                return Ok(None);
            };
            let Some(conversation) = load_conversation(conn, id.as_str())? else {
                return Ok(None);
            };
            let mut admins: Vec<UserId> = conn
                .prepare_cached("SELECT user_id FROM group_admins WHERE conversation_id = ?1")?
                .query_map([id.as_str()], |r| parsed(r, 0))?
                .collect::<rusqlite::Result<_>>()?;
            admins.sort_unstable();
            Ok(Some(Group {
                conversation,
                description,
                admins,
                max_members,
                version: version as u64,
            }))
        })
        .await
    }

    async fn save_membership(&self, change: &MembershipChange) -> Result<bool, StoreError> {
        let change = change.clone();
        self.write(move |conn| {
            let id = change.group_id.as_str();
            let bumped = conn
                .prepare_cached(
                    "UPDATE group_details SET version = version + 1 WHERE conversation_id = ?1 AND version = ?2",
                )?
                .execute(params![id, change.from_version as i64])?;
            if bumped == 0 {
                return Ok(false);
            }
            if let Some((user, joined_at)) = &change.joined {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO members (conversation_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, user.as_str(), joined_at])?;
            }
            if let Some(user) = &change.left {
                conn.prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
                    .execute(params![id, user.as_str()])?;
            }
            replace_admins(conn, id, &change.admins)?;
            Ok(true)
        })
        .await
    }
}

fn replace_admins(conn: &Connection, id: &str, admins: &[UserId]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM group_admins WHERE conversation_id = ?1")?
        .execute([id])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO group_admins (conversation_id, user_id) VALUES (?1, ?2)",
    )?;
    for admin in admins {
        insert.execute(params![id, admin.as_str()])?;
    }
    Ok(())
}
