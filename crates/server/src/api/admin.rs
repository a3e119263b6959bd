//! `/admin`: operator endpoints behind their own token: channel fault injection, dead letters, raw events.

use super::extract::ApiJson;
use super::problem::{ApiResult, Problem};
use super::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chat4all_connectors::Fault;
use chat4all_core::ports::OutgoingRecord;
use chat4all_core::services::dead_letters::ReplayFilter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Proof that the request carries the admin token.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let given = super::extract::bearer_token(&parts.headers, "admin token")?;
        if constant_time_eq(given.as_bytes(), state.admin.token.as_bytes()) {
            Ok(Self)
        } else {
            Err(Problem::unauthorized("wrong admin token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The name of a simulated channel.
pub enum SimulatedChannel {}

impl PartialSchema for SimulatedChannel {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(chat4all_connectors::NAMES))
            .into()
    }
}

impl ToSchema for SimulatedChannel {}

/// A fault to inject into a simulated channel.
#[derive(Deserialize, ToSchema)]
pub struct FaultRequest {
    mode: FaultMode,
    /// How long the fault lasts.
    #[schema(minimum = 1, maximum = 86400, default = 60)]
    duration_secs: Option<u64>,
    /// For `flaky`: the share of calls that fail.
    #[schema(minimum = 0, maximum = 1, default = 0.5)]
    failure_rate: Option<f64>,
    /// For `slow`: added latency in ms.
    #[schema(minimum = 0, maximum = 60000, default = 1000)]
    extra_latency_ms: Option<u64>,
}

/// A simulated channel's behaviour.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// Every call fails.
    Down,
    /// A share of the calls fail.
    Flaky,
    /// Calls take longer.
    Slow,
    /// No fault: ends the one in force.
    Ok,
}

/// The fault in force.
#[derive(Serialize, ToSchema)]
pub struct FaultResponse {
    channel: String,
    mode: FaultMode,
    duration_secs: u64,
}

/// Injects a fault into a simulated channel for a while (`ok` ends it).
#[utoipa::path(post, path = "/admin/channels/{channel}/fault", tag = "admin", request_body = FaultRequest,
    security(("admin" = [])),
    params(("channel" = inline(SimulatedChannel), Path)),
    responses((status = 200, body = FaultResponse), (status = 404, description = "No such simulated channel.")))]
pub async fn set_fault(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(channel): Path<String>,
    ApiJson(request): ApiJson<FaultRequest>,
) -> ApiResult<Json<FaultResponse>> {
    if !state.admin.channels.contains(&channel) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no simulated channel {channel:?}"),
        ));
    }
    let duration_secs = request.duration_secs.unwrap_or(60);
    if !(1..=86_400).contains(&duration_secs) {
        return Err(Problem::bad_request(
            "duration_secs must be between 1 and 86400",
        ));
    }
    let extra_latency_ms = request.extra_latency_ms.unwrap_or(1000);
    if extra_latency_ms > 60_000 {
        return Err(Problem::bad_request(
            "extra_latency_ms must be between 0 and 60000",
        ));
    }
    let failure_rate = request.failure_rate.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&failure_rate) {
        return Err(Problem::bad_request("failure_rate must be between 0 and 1"));
    }
    let fault = match request.mode {
        FaultMode::Ok => None,
        FaultMode::Down => Some(Fault::Down),
        FaultMode::Flaky => Some(Fault::Flaky { failure_rate }),
        FaultMode::Slow => Some(Fault::Slow {
            extra: Duration::from_millis(extra_latency_ms),
        }),
    };
    state
        .admin
        .control
        .set_fault(&channel, fault.as_ref(), Duration::from_secs(duration_secs))
        .await?;
    tracing::warn!(
        channel,
        mode = ?request.mode,
        duration_secs,
        "channel fault injected"
    );
    Ok(Json(FaultResponse {
        channel,
        mode: request.mode,
        duration_secs,
    }))
}

/// How many dead letters to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<usize>,
}

/// A dead letter.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    /// `topic/partition/offset` it came from.
    source: String,
    reason: String,
    key: String,
    headers: BTreeMap<String, String>,
    /// The payload as text (invalid UTF-8 replaced).
    payload: String,
    parked_at: i64,
}

/// Dead letters, oldest first.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    count: usize,
    dead_letters: Vec<DeadLetterView>,
}

/// Lists dead letters.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", security(("admin" = [])), params(ListQuery),
    responses((status = 200, body = DeadLetterList)))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    _: AdminAuth,
    super::extract::ApiQuery(query): super::extract::ApiQuery<ListQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 10000"));
    }
    let letters = state
        .admin
        .dead_letters
        .list(limit)
        .await
        .map_err(internal)?;
    let dead_letters: Vec<DeadLetterView> = letters
        .into_iter()
        .map(|l| DeadLetterView {
            source: l.source,
            reason: l.reason,
            key: l.key,
            headers: l.headers.into_iter().collect(),
            payload: String::from_utf8_lossy(&l.payload).into_owned(),
            parked_at: l.parked_at,
        })
        .collect();
    Ok(Json(DeadLetterList {
        count: dead_letters.len(),
        dead_letters,
    }))
}

fn internal(e: chat4all_core::ports::LogError) -> Problem {
    chat4all_core::ServiceError::from(e).into()
}

/// Which dead letters to replay.
#[derive(Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// Only messages of this channel.
    channel: Option<String>,
    /// Only dead letters parked at or after this time (ms since the epoch).
    since: Option<i64>,
}

/// How many were replayed.
#[derive(Serialize, ToSchema)]
pub struct ReplayResponse {
    replayed: usize,
}

/// Sends dead letters back where they came from (failed channel messages become PENDING and are delivered again).
#[utoipa::path(post, path = "/admin/dead-letters/replay", tag = "admin", request_body = ReplayRequest,
    security(("admin" = [])), responses((status = 200, body = ReplayResponse)))]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    _: AdminAuth,
    ApiJson(request): ApiJson<ReplayRequest>,
) -> ApiResult<Json<ReplayResponse>> {
    let filter = ReplayFilter {
        channel: request.channel,
        since: request.since,
    };
    let replayed = state
        .admin
        .dead_letters
        .replay(&filter, state.admin.default_validity)
        .await
        .map_err(internal)?;
    Ok(Json(ReplayResponse { replayed }))
}

/// A raw record to append (for demonstrations and tests, such as a poison event).
#[derive(Deserialize, ToSchema)]
pub struct InjectRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,249}$")]
    topic: String,
    /// At most 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    key: String,
    /// Sent as is, not validated.
    payload: String,
    /// Headers; none by default.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Where the record landed.
#[derive(Serialize, ToSchema)]
pub struct InjectResponse {
    topic: String,
    partition: u32,
    offset: u64,
}

/// Appends a raw record to a topic.
#[utoipa::path(post, path = "/admin/events", tag = "admin", request_body = InjectRequest,
    security(("admin" = [])), responses((status = 202, body = InjectResponse)))]
pub async fn inject(
    State(state): State<AppState>,
    _: AdminAuth,
    ApiJson(request): ApiJson<InjectRequest>,
) -> ApiResult<(StatusCode, Json<InjectResponse>)> {
    let valid_topic = (1..=249).contains(&request.topic.len())
        && request
            .topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    if !valid_topic || request.key.is_empty() || request.key.len() > 256 {
        return Err(Problem::bad_request(
            "topic must be 1-249 characters of [A-Za-z0-9._-] and key 1-256 characters",
        ));
    }
    let record = OutgoingRecord {
        key: request.key,
        headers: request.headers.into_iter().collect(),
        payload: request.payload.into_bytes(),
    };
    let position = state
        .admin
        .log
        .append(&request.topic, record)
        .await
        .map_err(internal)?;
    tracing::warn!(
        topic = request.topic,
        partition = position.partition,
        offset = position.offset,
        "raw event injected"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(InjectResponse {
            topic: request.topic,
            partition: position.partition,
            offset: position.offset,
        }),
    ))
}
