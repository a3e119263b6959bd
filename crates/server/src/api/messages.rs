//! `/v1/messages` and a conversation's history.

use super::extract::{ApiJson, ApiQuery, AuthUser, Correlation, Idempotency};
use super::observe::AcceptedMessage;
use super::problem::{ApiResult, Problem};
use super::schema::{Id, platform, position};
use super::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chat4all_core::ids::MessageId;
use chat4all_core::model::{HistoryQuery, Message, StatusChange};
use chat4all_core::services::messaging::{SendMessage, check_text};
use chat4all_core::status::MessageStatus;
use chat4all_core::time::now_millis;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A message to send.
#[derive(Deserialize, ToSchema)]
pub struct SendMessageRequest {
    /// Target conversation; created on first use.
    #[schema(value_type = Id)]
    conversation_id: String,
    /// Not blank; at most 10240 bytes of UTF-8 (413 beyond).
    #[schema(min_length = 1, max_length = 10240)]
    content: String,
    /// `whatsapp:+<E.164>`, `instagram:@<handle>`, another `channel:address`, a user id, or absent (the other
    /// members); no control characters.
    #[schema(min_length = 1, max_length = 256)]
    recipient_id: Option<String>,
    /// The caller, by user id or username (older clients send the username); anyone else → 403.
    sender_id: Option<String>,
    /// An attached file of the same conversation.
    #[schema(value_type = Option<Id>)]
    file_id: Option<String>,
    /// How long a channel may take to deliver it (default 10 h); not delivered by then → FAILED (expired).
    #[schema(minimum = 1, maximum = 2592000)]
    validity_seconds: Option<u64>,
    /// With a user `recipient_id`: deliver through that user's identity on this channel only (their preferred one
    /// there, else the oldest linked).
    #[schema(schema_with = platform)]
    channel: Option<String>,
}

/// The answer to an accepted message: it is durably stored and will be routed.
#[derive(Serialize, ToSchema)]
pub struct AcceptedResponse {
    message_id: String,
    conversation_id: String,
    /// Always `ACCEPTED`.
    status: &'static str,
    timestamp: i64,
}

/// A message.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    message_id: String,
    conversation_id: String,
    /// Position in the conversation, 1, 2, 3… in acceptance order.
    seq: u64,
    sender_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient_id: Option<String>,
    content: String,
    /// SENT, PENDING, DELIVERED, READ or FAILED.
    status: &'static str,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_metadata: Option<FileMetadata>,
    /// A fresh time-limited link to the attached file.
    #[serde(skip_serializing_if = "Option::is_none")]
    file_download_url: Option<String>,
}

/// What a message says about its attached file.
#[derive(Serialize, ToSchema)]
pub struct FileMetadata {
    filename: String,
    size_bytes: u64,
    mimetype: String,
    checksum: String,
}

impl MessageView {
    /// The view of `m`, with a fresh download link when it has an attachment.
    async fn of(m: Message, state: &AppState) -> ApiResult<Self> {
        let (file_id, file_metadata, file_download_url) = match m.attachment {
            Some(file) => {
                let link = state.files.link(&file, &state.public_url).await?;
                let metadata = FileMetadata {
                    filename: file.filename,
                    size_bytes: file.size_bytes,
                    mimetype: file.mimetype,
                    checksum: file.checksum,
                };
                (Some(file.file_id.into()), Some(metadata), Some(link.url))
            }
            None => (None, None, None),
        };
        Ok(Self {
            message_id: m.message_id.into(),
            conversation_id: m.conversation_id.into(),
            seq: m.seq,
            sender_id: m.sender_id.into(),
            recipient_id: m.recipient_id,
            content: m.content,
            status: m.status.as_str(),
            timestamp: m.timestamp,
            delivered_at: m.delivered_at,
            read_at: m.read_at,
            failure_reason: m.failure_reason,
            file_id,
            file_metadata,
            file_download_url,
        })
    }
}

/// One step of a message's status history.
#[derive(Serialize, ToSchema)]
pub struct StatusChangeView {
    status: &'static str,
    at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// The correlation id of the request that caused the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
}

impl From<StatusChange> for StatusChangeView {
    fn from(c: StatusChange) -> Self {
        Self {
            status: c.status.as_str(),
            at: c.at,
            detail: c.detail,
            correlation_id: c.correlation_id,
        }
    }
}

/// A message with its status history.
#[derive(Serialize, ToSchema)]
pub struct MessageDetailView {
    #[serde(flatten)]
    message: MessageView,
    status_history: Vec<StatusChangeView>,
    /// Who has read it (their read receipt reaches its `seq`), its sender aside.
    #[schema(value_type = Vec<Id>)]
    read_by: Vec<String>,
}

/// The benchmark reference of [`send`]: the same extractors (token, correlation id, Idempotency-Key, JSON body),
/// the same checks of the text and the same answer, without the send itself, so that a performance run shows what
/// durability and routing cost (`--bench-endpoints`; scripts/perf/goals.py).
pub async fn bench_send(
    AuthUser(_caller): AuthUser,
    Correlation(_correlation_id): Correlation,
    Idempotency(_key): Idempotency,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> ApiResult<Accepted> {
    check_text(&request.conversation_id, &request.content)?;
    Ok(accepted(
        MessageId::generate().into(),
        request.conversation_id,
        now_millis(),
    ))
}

/// The 202 of an accepted message: its body, and its ids for the access line.
type Accepted = (
    StatusCode,
    Extension<AcceptedMessage>,
    Json<AcceptedResponse>,
);

fn accepted(message_id: String, conversation_id: String, timestamp: i64) -> Accepted {
    (
        StatusCode::ACCEPTED,
        Extension(AcceptedMessage {
            message_id: message_id.clone(),
            conversation_id: conversation_id.clone(),
        }),
        Json(AcceptedResponse {
            message_id,
            conversation_id,
            status: "ACCEPTED",
            timestamp,
        }),
    )
}

/// The answer to marking a message read.
#[derive(Serialize, ToSchema)]
pub struct ReadResponse {
    message_id: String,
    /// `READ`: the caller has read it (in a group, the message itself becomes READ once every other member has;
    /// `GET /v1/messages/{id}` shows its status and `read_by`).
    status: &'static str,
    /// When the message became READ; while it waits for other members, when the caller read it.
    read_at: i64,
}

/// History paging: offset (`limit`, `offset`) or cursor (`after`/`before` a `seq`).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 50)]
    limit: Option<u32>,
    /// Messages to skip.
    #[param(schema_with = position, default = 0)]
    offset: Option<u64>,
    /// Only messages with a greater `seq`.
    #[param(schema_with = position)]
    after: Option<u64>,
    /// Only messages with a smaller `seq`.
    #[param(schema_with = position)]
    before: Option<u64>,
    /// Oldest first (`asc`, the default) or newest first.
    #[param(inline)]
    order: Option<Order>,
}

/// The order of a history page.
#[derive(Deserialize, ToSchema, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// Paging facts of a history page.
#[derive(Serialize, ToSchema)]
pub struct Pagination {
    limit: u32,
    offset: u64,
    returned: usize,
    has_more: bool,
    /// The `seq` to pass as `after` (asc) or `before` (desc) for the next page.
    next_cursor: Option<u64>,
}

/// A page of a conversation's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryResponse {
    conversation_id: String,
    messages: Vec<MessageView>,
    pagination: Pagination,
}

/// Accepts a message. The 202 is sent only once it is on durable storage.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = SendMessageRequest, security(("bearer" = [])),
    params(Idempotency),
    responses((status = 202, body = AcceptedResponse),
        (status = 400, description = "Malformed JSON, an invalid field, a file that is not in the conversation, or a `channel` without a user recipient or that this server does not run."),
        (status = 403, description = "Not a member of the conversation, or `sender_id` names someone else (it may be the caller's user id or username)."),
        (status = 413, description = "The content is over 10240 bytes."),
        (status = 422, description = "The `Idempotency-Key` was used with another request, or the recipient has no identity on `channel`.")))]
pub async fn send(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Idempotency(key): Idempotency,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> ApiResult<Accepted> {
    let request = SendMessage {
        conversation_id: request.conversation_id,
        content: request.content,
        recipient_id: request.recipient_id,
        sender_id: request.sender_id,
        file_id: request.file_id,
        validity_seconds: request.validity_seconds,
        channel: request.channel,
    };
    let sent = match state
        .messaging
        .send(&caller, request, key.as_ref(), &correlation_id)
        .await
    {
        Ok(sent) => sent,
        Err(e) => {
            metrics::counter!("messages_rejected_total", "service" => "api", "reason" => rejection_reason(&e))
                .increment(1);
            return Err(e.into());
        }
    };
    metrics::counter!("messages_accepted_total", "service" => "api").increment(1);
    Ok(accepted(
        sent.message_id.into(),
        sent.conversation_id.into(),
        sent.timestamp,
    ))
}

/// Registers the send path's series at zero, every rejection reason included.
pub fn register_metrics() {
    use chat4all_core::ServiceError::*;
    metrics::counter!("messages_accepted_total", "service" => "api").absolute(0);
    let each_kind = [
        Invalid,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        Unprocessable,
        TooLarge,
        Unavailable,
        Internal,
    ];
    for error in each_kind.map(|kind| kind(String::new())) {
        metrics::counter!("messages_rejected_total", "service" => "api", "reason" => rejection_reason(&error))
            .absolute(0);
    }
}

fn rejection_reason(error: &chat4all_core::ServiceError) -> &'static str {
    use chat4all_core::ServiceError::*;
    match error {
        Invalid(_) => "invalid",
        Unauthenticated(_) | Forbidden(_) => "forbidden",
        NotFound(_) => "not_found",
        Conflict(_) | Unprocessable(_) => "conflict",
        TooLarge(_) => "too_large",
        Unavailable(_) | Internal(_) => "unavailable",
    }
}

/// A page of a conversation's messages, for members.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Conversation id"), HistoryParams),
    responses((status = 200, body = HistoryResponse), (status = 403, description = "Not a member."),
        (status = 404, description = "No such conversation.")))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(conversation_id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<Json<HistoryResponse>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 100"));
    }
    let ascending = params.order != Some(Order::Desc);
    let query = HistoryQuery {
        limit,
        offset: params.offset.unwrap_or(0),
        after: params.after,
        before: params.before,
        ascending,
    };
    let page = state
        .messaging
        .history(&caller, &conversation_id, &query)
        .await?;
    let next_cursor = page
        .messages
        .last()
        .filter(|_| page.has_more)
        .map(|m| m.seq);
    let returned = page.messages.len();
    let mut messages = Vec::with_capacity(returned);
    for message in page.messages {
        messages.push(MessageView::of(message, &state).await?);
    }
    Ok(Json(HistoryResponse {
        conversation_id,
        pagination: Pagination {
            limit,
            offset: query.offset,
            returned,
            has_more: page.has_more,
            next_cursor,
        },
        messages,
    }))
}

/// One message with its status history.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Message id")),
    responses((status = 200, body = MessageDetailView),
        (status = 404, description = "No such message, or one of a conversation the caller is not in.")))]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageDetailView>> {
    let detail = state.messaging.message(&caller, &id).await?;
    Ok(Json(MessageDetailView {
        message: MessageView::of(detail.message, &state).await?,
        status_history: detail.history.into_iter().map(Into::into).collect(),
        read_by: detail.read_by.into_iter().map(Into::into).collect(),
    }))
}

/// Marks a message read for the caller, as a read receipt up to its `seq`: DELIVERED → READ once every other
/// member has read it (at once in a direct conversation); repeating it changes nothing.
#[utoipa::path(post, path = "/v1/messages/{id}/read", tag = "messages", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Message id")),
    responses((status = 200, body = ReadResponse),
        (status = 403, description = "The caller sent it."),
        (status = 404, description = "No such message, or one of a conversation the caller is not in."),
        (status = 409, description = "The message is not DELIVERED yet, or FAILED.")))]
pub async fn read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path(id): Path<String>,
) -> ApiResult<Json<ReadResponse>> {
    let marked = state
        .messaging
        .mark_read(&caller, &id, &correlation_id)
        .await?;
    let message = marked.message;
    Ok(Json(ReadResponse {
        message_id: message.message_id.into(),
        status: MessageStatus::Read.as_str(),
        read_at: message.read_at.unwrap_or(marked.receipt.read_at),
    }))
}
