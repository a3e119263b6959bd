//! The request/answer endpoints: auth, messages, history, conversations, groups, identities.

use crate::types::*;
use crate::{Client, Result, segment};
use futures::Stream;
use reqwest::Method;
use serde_json::json;

impl Client {
    /// `POST /auth/register`: creates a user.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<User> {
        let mut body = json!({"username": username, "password": password});
        if let Some(email) = email {
            body["email"] = json!(email);
        }
        self.json(self.public(Method::POST, "/auth/register")?.json(&body))
            .await
    }

    /// `POST /auth/token`: logs in, and keeps the token for the next calls.
    pub async fn login(&self, username: &str, password: &str) -> Result<Token> {
        let body = json!({"username": username, "password": password});
        let token: Token = self
            .json(self.public(Method::POST, "/auth/token")?.json(&body))
            .await?;
        self.set_token(Some(token.access_token.clone()));
        Ok(token)
    }

    /// `POST /v1/messages` with a fresh `Idempotency-Key`.
    pub async fn send_message(&self, message: &NewMessage) -> Result<Accepted> {
        let key = uuid::Uuid::new_v4().to_string();
        self.send_message_with_key(message, &key).await
    }

    /// `POST /v1/messages` with the caller's `Idempotency-Key`: sending again with the same key (after a timeout,
    /// say) returns the first answer and creates nothing.
    pub async fn send_message_with_key(
        &self,
        message: &NewMessage,
        idempotency_key: &str,
    ) -> Result<Accepted> {
        let request = self
            .authed(Method::POST, "/v1/messages")?
            .header("Idempotency-Key", idempotency_key)
            .json(message);
        self.json(request).await
    }

    /// `GET /v1/messages/{id}`: a message with its status history and readers.
    pub async fn message(&self, message_id: &str) -> Result<MessageDetail> {
        let path = format!("/v1/messages/{}", segment(message_id));
        self.json(self.authed(Method::GET, &path)?).await
    }

    /// `POST /v1/messages/{id}/read`: marks a message (and everything before it) read by the caller.
    pub async fn mark_read(&self, message_id: &str) -> Result<ReadResult> {
        let path = format!("/v1/messages/{}/read", segment(message_id));
        self.json(self.authed(Method::POST, &path)?).await
    }

    /// `POST /v1/conversations/{id}/read`: the caller has read every message up to `up_to_seq`.
    pub async fn read_up_to(&self, conversation_id: &str, up_to_seq: u64) -> Result<Receipt> {
        let path = format!("/v1/conversations/{}/read", segment(conversation_id));
        let request = self
            .authed(Method::POST, &path)?
            .json(&json!({"up_to_seq": up_to_seq}));
        self.json(request).await
    }

    /// `GET /v1/conversations/{id}/messages`: one page of history.
    pub async fn history(
        &self,
        conversation_id: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryPage> {
        let path = format!("/v1/conversations/{}/messages", segment(conversation_id));
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        if let Some(after) = query.after {
            params.push(("after", after.to_string()));
        }
        if let Some(before) = query.before {
            params.push(("before", before.to_string()));
        }
        if let Some(offset) = query.offset {
            params.push(("offset", offset.to_string()));
        }
        if let Some(order) = query.order {
            let order = match order {
                Order::Asc => "asc",
                Order::Desc => "desc",
            };
            params.push(("order", order.to_owned()));
        }
        self.json(self.authed(Method::GET, &path)?.query(&params))
            .await
    }

    /// Every message of a conversation with a `seq` above `after`, oldest first, fetched page by page
    /// (`page_size` 1..100) as the stream is read.
    pub fn messages_after(
        &self,
        conversation_id: &str,
        after: u64,
        page_size: u32,
    ) -> impl Stream<Item = Result<Message>> + Send + 'static {
        self.pages(conversation_id, Order::Asc, Some(after), page_size)
    }

    /// Every message of a conversation with a `seq` below `before` (all of them when `None`), newest first,
    /// fetched page by page as the stream is read.
    pub fn messages_before(
        &self,
        conversation_id: &str,
        before: Option<u64>,
        page_size: u32,
    ) -> impl Stream<Item = Result<Message>> + Send + 'static {
        self.pages(conversation_id, Order::Desc, before, page_size)
    }

    fn pages(
        &self,
        conversation_id: &str,
        order: Order,
        start: Option<u64>,
        page_size: u32,
    ) -> impl Stream<Item = Result<Message>> + Send + 'static {
        struct State {
            client: Client,
            conversation: String,
            cursor: Option<u64>,
            buffered: std::vec::IntoIter<Message>,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            conversation: conversation_id.to_owned(),
            cursor: start,
            buffered: Vec::new().into_iter(),
            done: false,
        };
        let limit = page_size.clamp(1, 100);
        futures::stream::try_unfold(state, move |mut state| async move {
            loop {
                if let Some(message) = state.buffered.next() {
                    return Ok(Some((message, state)));
                }
                if state.done {
                    return Ok(None);
                }
                let mut query = HistoryQuery {
                    limit: Some(limit),
                    order: Some(order),
                    ..HistoryQuery::default()
                };
                match order {
                    Order::Asc => query.after = state.cursor,
                    Order::Desc => query.before = state.cursor,
                }
                let page = state.client.history(&state.conversation, &query).await?;
                let next = page.messages.last().map(|m| m.seq);
                state.done = !page.pagination.has_more || next.is_none() || next == state.cursor;
                state.cursor = next.or(state.cursor);
                state.buffered = page.messages.into_iter();
            }
        })
    }

    /// `POST /v1/conversations`: creates a conversation.
    pub async fn create_conversation(
        &self,
        conversation: &NewConversation,
    ) -> Result<Conversation> {
        self.json(
            self.authed(Method::POST, "/v1/conversations")?
                .json(conversation),
        )
        .await
    }

    /// `GET /v1/conversations`: one page of the caller's conversations, newest first (`limit` 1..100).
    pub async fn conversations(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ConversationPage> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = limit {
            params.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            params.push(("cursor", cursor.to_owned()));
        }
        self.json(
            self.authed(Method::GET, "/v1/conversations")?
                .query(&params),
        )
        .await
    }

    /// Every conversation of the caller, newest first, following `next_cursor` (at most 100,000).
    pub async fn all_conversations(&self) -> Result<Vec<Conversation>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let page = self.conversations(Some(100), cursor.as_deref()).await?;
            all.extend(page.conversations);
            match page.next_cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => break,
            }
        }
        Ok(all)
    }

    /// `POST /v1/groups`: creates a group; the caller is its first admin.
    pub async fn create_group(&self, group: &NewGroup) -> Result<Group> {
        self.json(self.authed(Method::POST, "/v1/groups")?.json(group))
            .await
    }

    /// `GET /v1/groups/{id}`.
    pub async fn group(&self, group_id: &str) -> Result<Group> {
        let path = format!("/v1/groups/{}", segment(group_id));
        self.json(self.authed(Method::GET, &path)?).await
    }

    /// `POST /v1/groups/{id}/members`: adds a member (admins only).
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<Group> {
        let path = format!("/v1/groups/{}/members", segment(group_id));
        let request = self
            .authed(Method::POST, &path)?
            .json(&json!({"user_id": user_id}));
        self.json(request).await
    }

    /// `DELETE /v1/groups/{id}/members/{user_id}`: removes a member (admins), or leaves (anyone).
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        let path = format!(
            "/v1/groups/{}/members/{}",
            segment(group_id),
            segment(user_id)
        );
        self.execute(self.authed(Method::DELETE, &path)?).await?;
        Ok(())
    }

    /// `PUT /v1/groups/{id}/admins/{user_id}`: makes a member admin (admins only).
    pub async fn promote_admin(&self, group_id: &str, user_id: &str) -> Result<Group> {
        let path = format!(
            "/v1/groups/{}/admins/{}",
            segment(group_id),
            segment(user_id)
        );
        self.json(self.authed(Method::PUT, &path)?).await
    }

    /// `POST /v1/users/identities`: links a channel identity (`whatsapp` `+E.164`, `instagram` `@handle`).
    pub async fn link_identity(
        &self,
        platform: &str,
        value: &str,
        preferred: Option<bool>,
    ) -> Result<Identity> {
        let mut body = json!({"platform": platform, "value": value});
        if let Some(preferred) = preferred {
            body["preferred"] = json!(preferred);
        }
        self.json(
            self.authed(Method::POST, "/v1/users/identities")?
                .json(&body),
        )
        .await
    }

    /// `GET /v1/users/identities`: the caller's identities, oldest first.
    pub async fn identities(&self) -> Result<Vec<Identity>> {
        #[derive(serde::Deserialize)]
        struct List {
            identities: Vec<Identity>,
        }
        let list: List = self
            .json(self.authed(Method::GET, "/v1/users/identities")?)
            .await?;
        Ok(list.identities)
    }

    /// `DELETE /v1/users/identities/{platform}/{value}`.
    pub async fn unlink_identity(&self, platform: &str, value: &str) -> Result<Unlinked> {
        let path = format!(
            "/v1/users/identities/{}/{}",
            segment(platform),
            segment(value)
        );
        self.json(self.authed(Method::DELETE, &path)?).await
    }
}
