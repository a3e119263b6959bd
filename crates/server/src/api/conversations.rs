//! `/v1/conversations`: create and list.

use super::doc::{Id, conversation_type};
use super::extract::{ApiJson, AuthUser};
use super::problem::ApiResult;
use super::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chat4all_core::model::{Conversation, ConversationKind};
use chat4all_core::services::conversations::NewConversation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// The caller's conversations.
#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<ConversationView>,
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

/// Lists the caller's conversations, newest first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    responses((status = 200, body = ConversationList)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<ConversationList>> {
    let conversations = state.conversations.list(&caller).await?;
    Ok(Json(ConversationList {
        conversations: conversations.into_iter().map(Into::into).collect(),
    }))
}
