//! `/v1/users/identities`: the caller's identities on external channels.

use super::extract::{ApiJson, AuthUser, Correlation};
use super::problem::ApiResult;
use super::schema::platform;
use super::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chat4all_core::model::Identity;
use chat4all_core::ports::Linked;
use chat4all_core::services::identities::LinkIdentity;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An identity to link.
#[derive(Deserialize, ToSchema)]
pub struct LinkIdentityRequest {
    /// A channel this server runs.
    #[schema(schema_with = platform)]
    platform: String,
    /// An E.164 number (`+5511999990000`) on WhatsApp, a handle (`@someone`) on Instagram.
    #[schema(min_length = 1, max_length = 255)]
    value: String,
    /// Messages to the caller also go to their preferred identity; making one preferred unsets the other. When
    /// absent: false for a new identity, unchanged for one already linked.
    preferred: Option<bool>,
}

/// A user's identity on a channel.
#[derive(Serialize, ToSchema)]
pub struct IdentityView {
    user_id: String,
    #[schema(schema_with = platform)]
    platform: String,
    value: String,
    /// Always false: there is no verification flow yet.
    verified: bool,
    preferred: bool,
    linked_at: i64,
}

impl From<Identity> for IdentityView {
    fn from(i: Identity) -> Self {
        Self {
            user_id: i.user_id.into(),
            platform: i.platform,
            value: i.value,
            verified: i.verified,
            preferred: i.preferred,
            linked_at: i.linked_at,
        }
    }
}

/// The caller's identities.
#[derive(Serialize, ToSchema)]
pub struct IdentityList {
    /// Oldest first.
    identities: Vec<IdentityView>,
}

/// The answer to unlinking an identity.
#[derive(Serialize, ToSchema)]
pub struct UnlinkedResponse {
    platform: String,
    value: String,
    /// Always true.
    unlinked: bool,
}

/// Links an identity to the caller (idempotent: linking one they hold again answers 200 with it).
#[utoipa::path(post, path = "/v1/users/identities", tag = "identities", request_body = LinkIdentityRequest,
    security(("bearer" = [])),
    responses((status = 201, body = IdentityView, description = "Linked."),
        (status = 200, body = IdentityView, description = "The caller already held it (`preferred` applied if given)."),
        (status = 400, description = "Malformed JSON, a platform this server does not run, or a value its rules refuse."),
        (status = 409, description = "Another user holds this identity.")))]
pub async fn link(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    ApiJson(request): ApiJson<LinkIdentityRequest>,
) -> ApiResult<(StatusCode, Json<IdentityView>)> {
    let request = LinkIdentity {
        platform: request.platform,
        value: request.value,
        preferred: request.preferred,
    };
    let (status, identity) = match state.identities.link(&caller, request).await? {
        Linked::Created(identity) => (StatusCode::CREATED, identity),
        Linked::Existing(identity) => (StatusCode::OK, identity),
    };
    tracing::info!(%correlation_id, user_id = %caller, platform = identity.platform, preferred = identity.preferred,
        created = status == StatusCode::CREATED, "identity linked");
    Ok((status, Json(identity.into())))
}

/// The caller's identities.
#[utoipa::path(get, path = "/v1/users/identities", tag = "identities", security(("bearer" = [])),
    responses((status = 200, body = IdentityList)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<IdentityList>> {
    let identities = state.identities.list(&caller).await?;
    Ok(Json(IdentityList {
        identities: identities.into_iter().map(Into::into).collect(),
    }))
}

/// Unlinks one of the caller's identities.
#[utoipa::path(delete, path = "/v1/users/identities/{platform}/{value}", tag = "identities",
    security(("bearer" = [])),
    params(("platform" = String, Path, description = "The channel"),
        ("value" = String, Path, description = "The address, percent-encoded (`%2B5511999990000`, `@someone`)")),
    responses((status = 200, body = UnlinkedResponse),
        (status = 404, description = "The caller holds no such identity.")))]
pub async fn unlink(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path((platform, value)): Path<(String, String)>,
) -> ApiResult<Json<UnlinkedResponse>> {
    state.identities.unlink(&caller, &platform, &value).await?;
    tracing::info!(%correlation_id, user_id = %caller, platform, "identity unlinked");
    Ok(Json(UnlinkedResponse {
        platform,
        value,
        unlinked: true,
    }))
}
