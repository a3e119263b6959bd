//! The request middleware: correlation id, request span, access log (one line a request), HTTP metrics and
//! problem+json rendering of every error response (including the router's own 404 and 405, and the body limit's
//! 413).

use super::problem::Problem;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chat4all_core::ids::CorrelationId;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Requests served since start, for the api's heartbeat.
pub static REQUESTS_SERVED: AtomicU64 = AtomicU64::new(0);

/// Header carrying the correlation id, on requests and responses.
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The route template that served a request, passed from the inner route layer to [`observe`].
#[derive(Clone)]
struct RouteTemplate(MatchedPath);

/// One documented operation's request series, resolved when they are registered: recording a request then builds
/// no labels and looks nothing up in the registry.
struct RouteSeries {
    duration: metrics::Histogram,
    /// By status code, for the statuses the operation documents.
    requests: HashMap<u16, metrics::Counter>,
}

/// Every documented operation's series, by method and route template.
static ROUTES: OnceLock<HashMap<Method, HashMap<Box<str>, RouteSeries>>> = OnceLock::new();

/// The message a request accepted, passed by its handler to [`observe`]: the request's one access line names it,
/// so an accepted message costs one log line in the api, not two.
#[derive(Clone)]
pub struct AcceptedMessage {
    pub message_id: String,
    pub conversation_id: String,
}

/// Inner layer (on matched routes only): remembers the route template for the outer layer's metrics.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let template = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    response
}

/// Outer layer, around every request.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let supplied = request
        .headers()
        .get(&CORRELATION_HEADER)
        .or_else(|| request.headers().get("x-request-id"));
    let correlation_id = CorrelationId::from_header_or_new(supplied.and_then(|v| v.to_str().ok()));
    request.extensions_mut().insert(correlation_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", correlation_id = %correlation_id, method = %method, path = %path);

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| {
                v.as_bytes().starts_with(b"application/json")
                    || v.as_bytes().starts_with(b"application/problem+json")
            });
        let problem = response.extensions_mut().remove::<Problem>();
        if problem.is_some() || !is_json {
            let problem =
                problem.unwrap_or_else(|| Problem::new(status, default_detail(status.as_u16())));
            let mut rendered = problem.render(&path);
            for (name, value) in response.headers() {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    rendered.headers_mut().insert(name.clone(), value.clone());
                }
            }
            rendered
                .extensions_mut()
                .extend(std::mem::take(response.extensions_mut()));
            response = rendered;
        }
    }
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(correlation_id.as_str()) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }

    let elapsed = started.elapsed();
    REQUESTS_SERVED.fetch_add(1, Ordering::Relaxed);
    let template = response.extensions_mut().remove::<RouteTemplate>();
    record_request(
        &method,
        template.as_ref().map_or("unmatched", |t| t.0.as_str()),
        status,
        elapsed,
    );
    let accepted = response.extensions_mut().remove::<AcceptedMessage>();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            message_id = accepted.as_ref().map(|m| m.message_id.as_str()),
            conversation_id = accepted.as_ref().map(|m| m.conversation_id.as_str()),
            "request completed"
        );
    });
    response
}

/// Counts a request in its route's series: the resolved ones of a documented operation and status, else (an
/// unmatched path, an undocumented status) the registry's.
fn record_request(method: &Method, template: &str, status: StatusCode, elapsed: Duration) {
    let series = ROUTES
        .get()
        .and_then(|routes| routes.get(method)?.get(template));
    match series {
        Some(series) => series.duration.record(elapsed.as_secs_f64()),
        None => duration_series(method.as_str(), template).record(elapsed.as_secs_f64()),
    }
    match series.and_then(|series| series.requests.get(&status.as_u16())) {
        Some(requests) => requests.increment(1),
        None => requests_series(method.as_str(), template, status.as_str()).increment(1),
    }
}

/// The latency series of the route `path` for `method`.
fn duration_series(method: &str, path: &str) -> metrics::Histogram {
    metrics::histogram!("http_request_duration_seconds", "service" => "api", "method" => method.to_owned(),
        "path" => path.to_owned())
}

/// The request count of the route `path` for `method` and `status`.
fn requests_series(method: &str, path: &str, status: &str) -> metrics::Counter {
    metrics::counter!("http_requests_total", "service" => "api", "method" => method.to_owned(),
        "path" => path.to_owned(), "status" => status.to_owned())
}

/// Registers the request series at zero for every operation of `api` and every status it documents, and keeps
/// their handles for [`observe`].
pub fn register_metrics(api: &utoipa::openapi::OpenApi) {
    let mut routes: HashMap<Method, HashMap<Box<str>, RouteSeries>> = HashMap::new();
    for (path, item) in &api.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let duration = duration_series(method.as_str(), path);
            let mut requests = HashMap::new();
            for status in operation.responses.responses.keys() {
                let counter = requests_series(method.as_str(), path, status);
                counter.absolute(0);
                if let Ok(code) = status.parse() {
                    requests.insert(code, counter);
                }
            }
            routes
                .entry(method)
                .or_default()
                .insert(path.as_str().into(), RouteSeries { duration, requests });
        }
    }
    // The same document and registry each time: the first call's handles serve the process.
    let _ = ROUTES.set(routes);
}

fn default_detail(status: u16) -> &'static str {
    match status {
        404 => "no such resource",
        405 => "method not allowed for this resource (see the Allow header)",
        413 => "request body is over its size limit",
        408 => "the request took too long",
        _ => "the request could not be served",
    }
}

#[cfg(test)]
mod tests {
    use super::{AcceptedMessage, observe};
    use crate::telemetry::CapturedLog;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::{get, post};
    use axum::{Extension, Router, middleware};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_is_one_access_line_that_names_the_message_it_accepted() {
        let log = CapturedLog::default();
        let _subscriber = tracing::subscriber::set_default(log.subscriber());
        let app = Router::new()
            .route(
                "/send",
                post(|| async {
                    let message_id = "m-1".to_owned();
                    let conversation_id = "c-1".to_owned();
                    let ids = AcceptedMessage {
                        message_id,
                        conversation_id,
                    };
                    (StatusCode::ACCEPTED, Extension(ids))
                }),
            )
            .route("/other", get(|| async { "ok" }))
            .layer(middleware::from_fn(observe));
        for request in [Request::post("/send"), Request::get("/other")] {
            let response = app
                .clone()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(response.status().is_success());
            assert!(response.extensions().get::<AcceptedMessage>().is_none());
        }
        let lines = log.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let accepted = &lines[0];
        assert_eq!(accepted["message"], "request completed");
        assert_eq!(accepted["status"], 202);
        assert_eq!(
            (&accepted["message_id"], &accepted["conversation_id"]),
            (&"m-1".into(), &"c-1".into())
        );
        assert!(lines[1].get("message_id").is_none(), "{:?}", lines[1]);
        assert_eq!(lines[1]["status"], 200);
    }
}
