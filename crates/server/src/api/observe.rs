//! The request middleware: correlation id, request span, access log, HTTP metrics and problem+json rendering of
//! every error response (including the router's own 404 and 405, and the body limit's 413).

use super::problem::Problem;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use chat4all_core::ids::CorrelationId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

/// Requests served since start, for the api's heartbeat.
pub static REQUESTS_SERVED: AtomicU64 = AtomicU64::new(0);

/// Header carrying the correlation id, on requests and responses.
pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// The route template that served a request, passed from the inner route layer to [`observe`].
#[derive(Clone)]
struct RouteTemplate(String);

/// Inner layer (on matched routes only): remembers the route template for the outer layer's metrics.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
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

    let template = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |t| t.0.as_str())
        .to_owned();
    let elapsed = started.elapsed();
    REQUESTS_SERVED.fetch_add(1, Ordering::Relaxed);
    let method = method.to_string();
    let labels = [
        ("service", "api".to_owned()),
        ("method", method),
        ("path", template),
    ];
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    let [service, method, path] = labels;
    metrics::counter!(
        "http_requests_total",
        &[
            service,
            method,
            path,
            ("status", status.as_u16().to_string())
        ]
    )
    .increment(1);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    response
}

/// Registers the request series at zero for every operation of `api` and every status it documents.
pub fn register_metrics(api: &utoipa::openapi::OpenApi) {
    for (path, item) in &api.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let _ = metrics::histogram!("http_request_duration_seconds", "service" => "api", "method" => method, "path" => path.clone());
            for status in operation.responses.responses.keys() {
                metrics::counter!("http_requests_total", "service" => "api", "method" => method, "path" => path.clone(), "status" => status.clone())
                    .absolute(0);
            }
        }
    }
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
