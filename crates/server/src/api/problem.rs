//! RFC 7807 problem responses: the one place where errors become HTTP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat4all_core::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error on its way to the client. Handlers return it; the `observe` middleware renders it (and any other
/// error response, such as a 405 from the router) as `application/problem+json` with the request path.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable explanation, safe to show.
    pub detail: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// A 401 Unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// The body, for a request to `instance`.
    pub fn render(&self, instance: &str) -> Response {
        let body = ProblemBody {
            r#type: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            instance,
            error: &self.detail,
        };
        let mut response = (
            self.status,
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The `application/problem+json` body of every error response (RFC 7807).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// Always `about:blank`: the status says what went wrong.
    r#type: &'static str,
    /// The status's reason phrase.
    title: &'static str,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong, safe to show.
    detail: &'a str,
    /// The request's path.
    instance: &'a str,
    /// The same as `detail`, for older clients.
    error: &'a str,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Self {
        let status = match &error {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %error, "request failed");
        }
        let detail = match error {
            ServiceError::Internal(_) => {
                "internal error; the server log has the details under this request's correlation id"
                    .into()
            }
            other => other.to_string(),
        };
        let mut problem = Self::new(status, detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            problem.retry_after = Some(1);
        }
        problem
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, Problem>;

impl From<chat4all_core::ids::InvalidValue> for Problem {
    fn from(error: chat4all_core::ids::InvalidValue) -> Self {
        Self::bad_request(error.0)
    }
}
