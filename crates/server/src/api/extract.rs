//! Request extractors whose failures are problem+json: JSON bodies, query strings, `Idempotency-Key`, the bearer
//! token and the correlation id.

use super::problem::Problem;
use super::schema::Id;
use super::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use chat4all_core::ids::{CorrelationId, IdempotencyKey, UserId};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use utoipa::IntoParams;

/// A JSON object body. Malformed JSON, another kind of JSON value (serde would take an array for a struct) or a
/// wrong type is a 400 naming the problem; a body over the limit is a 413. The content type is not required, so
/// older clients that omit it keep working.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body is over its size limit",
                    )
                } else {
                    Problem::bad_request(format!(
                        "cannot read the request body: {}",
                        rejection.body_text()
                    ))
                }
            })?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Problem::bad_request("the body must be a JSON object"));
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A query string; a bad value is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| Self(q))
            .map_err(|e| Problem::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// The optional `Idempotency-Key` header; a malformed one is a 400.
#[derive(IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct Idempotency(
    /// Replays the first answer to this key from the same user for 24 h.
    #[param(value_type = Id, required = false)]
    pub Option<IdempotencyKey>,
);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get("idempotency-key")
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|v| IdempotencyKey::parse(v).ok())
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "Idempotency-Key must be 1-128 characters of [A-Za-z0-9._:@-]",
                        )
                    })
            })
            .transpose()
            .map(Self)
    }
}

/// The authenticated caller, from `Authorization: Bearer <jwt>`.
pub struct AuthUser(pub UserId);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = bearer_user(&parts.headers, state).await?;
        state.rate_limit.check(&user)?;
        Ok(Self(user))
    }
}

/// The token of `Authorization: Bearer <token>`; 401 naming `what` when it is missing or malformed.
pub fn bearer_token<'h>(headers: &'h HeaderMap, what: &str) -> Result<&'h str, Problem> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| Problem::unauthorized(format!("missing Authorization: Bearer <{what}>")))
}

/// The user named by the request's bearer token; 401 when it is missing or invalid, or names no existing user.
pub async fn bearer_user(headers: &HeaderMap, state: &AppState) -> Result<UserId, Problem> {
    let token = bearer_token(headers, "token")?;
    let user = state.tokens.verify(token)?;
    if !state.accounts.exists(&user).await? {
        return Err(Problem::unauthorized(
            "invalid token: its user does not exist",
        ));
    }
    Ok(user)
}

/// The client's address, as the server loop recorded it (absent when the router is served another way).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// The request's correlation id, set by the `observe` middleware.
pub struct Correlation(pub CorrelationId);

impl<S: Send + Sync> FromRequestParts<S> for Correlation {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .unwrap_or_else(|| CorrelationId::from_header_or_new(None));
        Ok(Self(id))
    }
}
