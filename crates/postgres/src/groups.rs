//! The PostgreSQL store's groups: details and admins beside the conversation's rows, membership changes
//! compare-and-set on the group's version.

use crate::PostgresStore;
use crate::error::Error;
use crate::rows::{insert_conversation_rows, load_conversations, parsed};
use async_trait::async_trait;
use chat4all_core::ids::{ConversationId, UserId};
use chat4all_core::model::Group;
use chat4all_core::ports::{GroupStore, MembershipChange, StoreError};
use tokio_postgres::GenericClient;

#[async_trait]
impl GroupStore for PostgresStore {
    async fn insert_group(&self, group: &Group) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        if !insert_conversation_rows(&*tx, &group.conversation).await? {
            return Ok(false);
        }
        let id = group.conversation.conversation_id.as_str();
        tx.execute(
            "INSERT INTO group_details (conversation_id, description, max_members, version) VALUES ($1, $2, $3, $4)",
            &[&id, &group.description, &i64::from(group.max_members), &(group.version as i64)],
        )
        .await
        .map_err(Error::from)?;
        replace_admins(&*tx, id, &group.admins).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(true)
    }

    async fn group(&self, id: &ConversationId) -> Result<Option<Group>, StoreError> {
        let client = self.client().await?;
        let details = client
            .query_opt(
                "SELECT description, max_members, version FROM group_details WHERE conversation_id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        let Some(details) = details else {
            return Ok(None);
        };
        let Some(conversation) = load_conversations(&**client, &[id.as_str().to_owned()])
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let rows = client
            .query(
                "SELECT user_id FROM group_admins WHERE conversation_id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(Error::from)?;
        let mut admins = rows
            .iter()
            .map(|r| parsed(r, 0))
            .collect::<Result<Vec<UserId>, Error>>()?;
        admins.sort_unstable();
        let max_members: i64 = details.try_get(1).map_err(Error::from)?;
        let version: i64 = details.try_get(2).map_err(Error::from)?;
        Ok(Some(Group {
            conversation,
            description: details.try_get(0).map_err(Error::from)?,
            admins,
            max_members: max_members as u32,
            version: version as u64,
        }))
    }

    async fn save_membership(&self, change: &MembershipChange) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(Error::from)?;
        let id = change.group_id.as_str();
        let bumped = tx
            .execute(
                "UPDATE group_details SET version = version + 1 WHERE conversation_id = $1 AND version = $2",
                &[&id, &(change.from_version as i64)],
            )
            .await
            .map_err(Error::from)?;
        if bumped == 0 {
            return Ok(false);
        }
        if let Some((user, joined_at)) = &change.joined {
            tx.execute(
                "INSERT INTO members (conversation_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&id, &user.as_str(), joined_at],
            )
            .await
            .map_err(Error::from)?;
        }
        if let Some(user) = &change.left {
            tx.execute(
                "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2",
                &[&id, &user.as_str()],
            )
            .await
            .map_err(Error::from)?;
        }
        replace_admins(&*tx, id, &change.admins).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(true)
    }
}

async fn replace_admins(
    client: &impl GenericClient,
    id: &str,
    admins: &[UserId],
) -> Result<(), Error> {
    client
        .execute(
            "DELETE FROM group_admins WHERE conversation_id = $1",
            &[&id],
        )
        .await?;
    let users: Vec<&str> = admins.iter().map(UserId::as_str).collect();
    client
        .execute(
            "INSERT INTO group_admins (conversation_id, user_id) SELECT $1, u FROM UNNEST($2::TEXT[]) AS u
             ON CONFLICT DO NOTHING",
            &[&id, &users],
        )
        .await?;
    Ok(())
}
