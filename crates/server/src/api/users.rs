//! `/auth/register` and `/auth/token`, and looking users up (`/v1/users`).

use super::extract::{ApiJson, ApiQuery, AuthUser, ClientAddr};
use super::problem::ApiResult;
use super::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode, header};
use chat4all_core::ServiceError;
use chat4all_core::ids::{Email, Password, UserId, Username};
use chat4all_core::model::User;
use chat4all_core::services::accounts::MAX_LOOKUP;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Registration request.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Unique.
    #[schema(pattern = "^[A-Za-z0-9_-]{3,50}$", min_length = 3, max_length = 50)]
    username: String,
    /// Stored as an Argon2id hash only.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// An e-mail address, unique; an empty string is the same as none.
    #[schema(
        max_length = 254,
        pattern = r"^$|^[^@\s\x00-\x1f\x7f-\x9f]+@[^@.\s\x00-\x1f\x7f-\x9f]+(\.[^@.\s\x00-\x1f\x7f-\x9f]+)+$"
    )]
    email: Option<String>,
}

/// A registered user.
#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    user_id: String,
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    created_at: i64,
}

/// Login request.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    username: String,
    #[schema(max_length = 128)]
    password: String,
}

/// An access token.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    user_id: String,
}

/// Creates a user.
#[utoipa::path(post, path = "/auth/register", tag = "users", request_body = RegisterRequest,
    responses((status = 201, body = UserResponse),
        (status = 400, description = "Malformed JSON, or an invalid username, password or e-mail."),
        (status = 409, description = "The username or e-mail is taken."),
        (status = 429, description = "Too many attempts."),
        (status = 503, description = "Password hashing is saturated.")))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    let username = Username::parse(request.username)?;
    let password = Password::parse(request.password)?;
    let email = request
        .email
        .filter(|e| !e.is_empty())
        .map(Email::parse)
        .transpose()?;
    let user = state.accounts.register(username, password, email).await?;
    tracing::info!(user_id = %user.user_id, "user registered");
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            user_id: user.user_id.into(),
            username: user.username.into(),
            email: user.email.map(Into::into),
            created_at: user.created_at,
        }),
    ))
}

/// Exchanges credentials for an access token.
#[utoipa::path(post, path = "/auth/token", tag = "users", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "Wrong credentials."),
        (status = 429, description = "Too many attempts."),
        (status = 503, description = "Password hashing is saturated.")))]
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(request): ApiJson<TokenRequest>,
) -> ApiResult<([(HeaderName, &'static str); 1], Json<TokenResponse>)> {
    state.login_throttle.check(&request.username, address)?;
    let user = if request.password.chars().count() > 128 {
        Err(ServiceError::Unauthenticated(
            "invalid username or password".into(),
        ))
    } else {
        state
            .accounts
            .authenticate(&request.username, Password::unchecked(request.password))
            .await
    };
    let user = user.inspect_err(|e| {
        if matches!(e, ServiceError::Unauthenticated(_)) {
            state
                .login_throttle
                .record_failure(&request.username, address);
        }
    })?;
    // A credential: no cache may keep it (RFC 6749 §5.1).
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    Ok((
        no_store,
        Json(TokenResponse {
            access_token: state.tokens.issue(&user.user_id)?,
            token_type: "Bearer",
            expires_in: state.tokens.ttl().as_secs(),
            user_id: user.user_id.into(),
        }),
    ))
}

/// What any user may know of another: the id and the name (never the e-mail).
#[derive(Serialize, ToSchema)]
pub struct Profile {
    user_id: String,
    username: String,
}

impl From<User> for Profile {
    fn from(user: User) -> Self {
        Self {
            user_id: user.user_id.into(),
            username: user.username.into(),
        }
    }
}

/// Profiles found.
#[derive(Serialize, ToSchema)]
pub struct ProfileList {
    users: Vec<Profile>,
}

/// Which users to look up.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupParams {
    /// User ids separated by commas, at most 100.
    ids: String,
}

/// The names of users known by id (unknown ids are left out), so that a client can show who wrote what.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(LookupParams),
    responses((status = 200, body = ProfileList),
        (status = 400, description = "A malformed id, or more than 100.")))]
pub async fn lookup(
    State(state): State<AppState>,
    AuthUser(_caller): AuthUser,
    ApiQuery(params): ApiQuery<LookupParams>,
) -> ApiResult<Json<ProfileList>> {
    let ids = params
        .ids
        .split(',')
        .filter(|id| !id.is_empty())
        .take(MAX_LOOKUP + 1)
        .map(UserId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let users = state.accounts.users(&ids).await?;
    Ok(Json(ProfileList {
        users: users.into_iter().map(Into::into).collect(),
    }))
}

/// One user, named by user id or by username: how people find each other to start a conversation.
#[utoipa::path(get, path = "/v1/users/{user}", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path, description = "A user id or a username.")),
    responses((status = 200, body = Profile), (status = 404, description = "No such user.")))]
pub async fn find(
    State(state): State<AppState>,
    AuthUser(_caller): AuthUser,
    Path(who): Path<String>,
) -> ApiResult<Json<Profile>> {
    let user = state
        .accounts
        .find(&who)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no such user".into()))?;
    Ok(Json(user.into()))
}
