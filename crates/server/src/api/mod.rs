//! The HTTP api: routes, middleware and the OpenAPI document generated from the handlers.

pub mod admin;
mod conversations;
mod doc;
mod downloads;
mod extract;
mod files;
mod groups;
mod identities;
mod login_throttle;
mod messages;
mod observe;
pub mod ops;
mod problem;
mod ranges;
mod rate_limit;
mod schema;
mod state;
mod tokens;
mod upload_parts;
mod uploads;
mod users;
mod web;
mod ws;

pub use doc::openapi_document;
pub use login_throttle::LoginThrottle;
pub use observe::{CORRELATION_HEADER, REQUESTS_SERVED};
pub use rate_limit::RateLimit;
pub use state::{Admin, AppState, Health, Ops, Services};
pub use tokens::Tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use chat4all_core::services::files::MAX_CHUNK_BYTES;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// Largest JSON body accepted: room for 10 KiB of content even when every character is escaped.
const MAX_JSON_BODY: usize = 128 * 1024;

/// All routes with their middleware. A request that does not stream a file must be answered within
/// `request_timeout` (else 408); one that streams may take as long as it needs, but its body may not pause for
/// longer than `body_pause`. `bench_endpoints` adds `POST /bench/messages`.
pub fn router(
    state: AppState,
    request_timeout: Duration,
    body_pause: Duration,
    bench_endpoints: bool,
) -> Router {
    let streaming = Router::new()
        .route(
            "/v1/files",
            post(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}/content", get(downloads::content))
        .route(
            "/v1/uploads/{id}",
            put(uploads::put_chunk).layer(DefaultBodyLimit::max(MAX_CHUNK_BYTES as usize)),
        )
        .layer(RequestBodyTimeoutLayer::new(body_pause));
    let bench = if bench_endpoints {
        Router::new().route("/bench/messages", post(messages::bench_send))
    } else {
        Router::new()
    };
    let routes = Router::new()
        .merge(bench)
        .route("/auth/register", post(users::register))
        .route("/auth/token", post(users::token))
        .route("/v1/users", get(users::lookup))
        .route("/v1/users/{user}", get(users::find))
        .route(
            "/v1/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route("/v1/conversations/{id}/messages", get(messages::history))
        .route("/v1/conversations/{id}/read", post(conversations::read))
        .route("/v1/groups", post(groups::create))
        .route("/v1/groups/{id}", get(groups::get))
        .route("/v1/groups/{id}/members", post(groups::add_member))
        .route(
            "/v1/groups/{id}/members/{user_id}",
            delete(groups::remove_member),
        )
        .route("/v1/groups/{id}/admins/{user_id}", put(groups::promote))
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/messages/{id}/read", post(messages::read))
        .route(
            "/v1/users/identities",
            post(identities::link).get(identities::list),
        )
        .route(
            "/v1/users/identities/{platform}/{value}",
            delete(identities::unlink),
        )
        .route("/v1/files/{id}/download", get(downloads::download))
        .route("/v1/uploads", post(uploads::create_upload))
        .route("/v1/uploads/{id}", get(uploads::upload_status))
        .route("/v1/uploads/{id}/complete", post(uploads::complete_upload))
        .route("/admin/channels/{channel}/fault", post(admin::set_fault))
        .route("/admin/dead-letters", get(admin::list_dead_letters))
        .route(
            "/admin/dead-letters/replay",
            post(admin::replay_dead_letters),
        )
        .route("/admin/events", post(admin::inject))
        .route("/v1/ws", get(ws::connect))
        .route("/notifications", get(ws::connect))
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(web::page))
        .route("/web/{file}", get(web::file))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .merge(streaming)
        .route_layer(middleware::from_fn(observe::tag_route))
        .with_state(state);
    // The layers every request passes, wrapped once around all the routes: `Router::layer` wraps each route in
    // each of them, and a request clones every wrapper of its route (about 15 of the ~235 allocations a message
    // cost end to end).
    let every_request = ServiceBuilder::new()
        .layer(middleware::from_fn(observe::observe))
        .layer(CatchPanicLayer::new())
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .service(routes);
    Router::new().fallback_service(every_request)
}

/// Registers every series the api emits at zero, so that dashboards and alerts read 0, not "no data", from start.
pub fn register_metrics() {
    observe::register_metrics(&openapi_document());
    messages::register_metrics();
    files::register_metrics();
    groups::register_metrics();
    login_throttle::register_metrics();
    ws::register_metrics();
    crate::http_server::register_metrics();
}
