//! `/v1/conversations`: create, list, and the caller's read receipt.

use super::extract::{ApiJson, ApiQuery, AuthUser, Correlation};
use super::problem::ApiResult;
use super::schema::{Id, conversation_type, position};
use super::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chat4all_core::model::{Conversation, ConversationKind, Reading};
use chat4all_core::services::conversations::{MAX_PAGE, NewConversation};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Conversation creation request.
#[derive(Deserialize, ToSchema)]
pub struct CreateConversationRequest {
    /// Generated when absent.
    #[schema(value_type = Option<Id>)]
    conversation_id: Option<String>,
    /// A direct conversation has exactly one other member.
    #[serde(rename = "type")]
    #[schema(schema_with = conversation_type)]
    kind: ConversationKind,
    /// User ids of the other members; the caller is always a member (at most 256 in all).
    #[serde(default)]
    #[schema(value_type = Vec<Id>, max_items = 256)]
    members: Vec<String>,
    /// Display name (trimmed).
    #[schema(max_length = 200)]
    name: Option<String>,
}

/// A conversation.
#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    conversation_id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = conversation_type)]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    members: Vec<String>,
    created_at: i64,
    created_by: String,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> Self {
        Self {
            conversation_id: c.conversation_id.into(),
            kind: c.kind.as_str(),
            name: c.name,
            members: c.members.into_iter().map(Into::into).collect(),
            created_at: c.created_at,
            created_by: c.created_by.into(),
        }
    }
}

/// A conversation in the caller's list, with where the caller stands in it, so that a client can show unread
/// counts without reading each history.
#[derive(Serialize, ToSchema)]
pub struct ListedConversation {
    #[serde(flatten)]
    conversation: ConversationView,
    /// The conversation's last message `seq`; 0 before its first message.
    last_seq: u64,
    /// The caller's read receipt (`up_to_seq` of `POST /v1/conversations/{id}/read`); 0 without one.
    read_up_to: u64,
    /// Messages past `read_up_to` sent by others (the caller's own are never unread).
    unread: u64,
}

impl From<(Conversation, Reading)> for ListedConversation {
    fn from((conversation, reading): (Conversation, Reading)) -> Self {
        Self {
            conversation: conversation.into(),
            last_seq: reading.last_seq,
            read_up_to: reading.read_up_to,
            unread: reading.unread,
        }
    }
}

/// The caller's conversations.
#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<ListedConversation>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Conversation list paging: newest first, by key (stable while conversations are created).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Creates a conversation with the caller as a member.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = CreateConversationRequest,
    security(("bearer" = [])),
    responses((status = 201, body = ConversationView),
        (status = 400, description = "Malformed JSON, a bad shape, or an unknown member."),
        (status = 409, description = "The id is taken.")))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    ApiJson(request): ApiJson<CreateConversationRequest>,
) -> ApiResult<(StatusCode, Json<ConversationView>)> {
    let request = NewConversation {
        conversation_id: request.conversation_id,
        kind: request.kind,
        members: request.members,
        name: request.name,
    };
    let conversation = state.conversations.create(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(conversation.into())))
}

/// Lists the caller's conversations, newest first, each with the caller's reading position.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = ConversationList),
        (status = 400, description = "A limit out of range, or a cursor this server did not give.")))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ConversationList>> {
    let page = state
        .conversations
        .list(
            &caller,
            params.cursor.as_deref(),
            params.limit.unwrap_or(MAX_PAGE),
        )
        .await?;
    Ok(Json(ConversationList {
        conversations: page.conversations.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// How far the caller has read a conversation.
#[derive(Deserialize, ToSchema)]
pub struct ReadUpToRequest {
    /// Every message up to this `seq` is read: 1..the conversation's last `seq`.
    #[schema(schema_with = position, minimum = 1)]
    up_to_seq: u64,
}

/// A member's read receipt: every message up to `up_to_seq` is read.
#[derive(Serialize, ToSchema)]
pub struct ReceiptView {
    conversation_id: String,
    user_id: String,
    up_to_seq: u64,
    /// When the receipt last moved.
    read_at: i64,
}

/// Marks everything up to `up_to_seq` read for the caller. Receipts only move forward: a lower value leaves the
/// receipt where it was. A message becomes READ for its sender once every other member has read it.
#[utoipa::path(post, path = "/v1/conversations/{id}/read", tag = "conversations", request_body = ReadUpToRequest,
    security(("bearer" = [])),
    params(("id" = Id, Path, description = "Conversation id")),
    responses((status = 200, body = ReceiptView),
        (status = 400, description = "`up_to_seq` is below 1 or beyond the conversation's last `seq`."),
        (status = 403, description = "Not a member."),
        (status = 404, description = "No such conversation.")))]
pub async fn read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReadUpToRequest>,
) -> ApiResult<Json<ReceiptView>> {
    let receipt = state
        .receipts
        .read_up_to(&caller, &id, request.up_to_seq, &correlation_id)
        .await?;
    Ok(Json(ReceiptView {
        conversation_id: receipt.conversation_id.into(),
        user_id: receipt.user_id.into(),
        up_to_seq: receipt.up_to_seq,
        read_at: receipt.read_at,
    }))
}
