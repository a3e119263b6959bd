//! Operations endpoints: `/health`, `/health/live`, `/metrics`, `/openapi.json`.

use super::state::Ops;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chat4all_core::services::control::REPORT_VALIDITY;
use chat4all_core::time::now_millis;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// One component's state.
#[derive(Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `UP`, `DOWN`, `LAGGING` (consumers) or `SILENT` (a connector that stopped reporting).
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// For connectors: the circuit breaker, `CLOSED`, `OPEN` or `HALF_OPEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit_breaker: Option<String>,
    /// For connectors: messages parked as PENDING.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<i64>,
    /// For connectors: the injected fault in force (`down`, `flaky`, `slow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<String>,
}

/// Overall health.
#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    /// `UP` when every component is up, else `DOWN`.
    status: &'static str,
    components: BTreeMap<String, ComponentHealth>,
    timestamp: i64,
}

/// How long `/health` waits for a backend before it reports it DOWN: one that does not answer is down to its
/// clients, and a health check must answer before its caller's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer of a backend call, or an error once [`PROBE_TIMEOUT`] has passed.
async fn within<T, E: std::fmt::Display>(
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    }
}

async fn probe<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> ComponentHealth {
    let started = Instant::now();
    let result = within(check).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    match result {
        Ok(()) => ComponentHealth {
            status: "UP",
            latency_ms,
            detail: None,
            circuit_breaker: None,
            pending: None,
            fault: None,
        },
        Err(e) => ComponentHealth {
            status: "DOWN",
            latency_ms,
            detail: Some(e),
            circuit_breaker: None,
            pending: None,
            fault: None,
        },
    }
}

/// Component health: 200 when everything this process needs is up, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
pub async fn health(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let health = &ops.health;
    // All at once, each bounded: the answer comes within one probe timeout whatever hangs.
    let (event_log, store, reports) = tokio::join!(
        probe(health.log.ping()),
        probe(health.stores.ping()),
        within(health.control.reports())
    );
    let mut components = BTreeMap::new();
    components.insert("event_log".to_owned(), event_log);
    components.insert("store".to_owned(), store);
    // Lag is reported, not fatal: a backlog drains on its own, and this process still serves.
    let max_lag = health.lag.max();
    let lagging = max_lag > health.lag_threshold;
    components.insert(
        "consumer_lag".to_owned(),
        ComponentHealth {
            status: if lagging { "LAGGING" } else { "UP" },
            latency_ms: 0.0,
            detail: Some(format!(
                "largest lag {max_lag} records (threshold {})",
                health.lag_threshold
            )),
            circuit_breaker: None,
            pending: None,
            fault: None,
        },
    );
    // A channel that is down does not make this process unhealthy: its messages are parked and delivered later.
    // Connectors report through the store, so this shows them wherever they run.
    let reports = match reports {
        Ok(reports) => reports,
        Err(e) => {
            tracing::warn!(error = %e, "connector reports unreadable");
            Vec::new()
        }
    };
    for channel in &health.channels {
        let report = reports.iter().find(|r| &r.channel == channel);
        let component = match report {
            Some(report) => ComponentHealth {
                status: "UP",
                latency_ms: 0.0,
                detail: Some(match report.circuit_breaker.as_str() {
                    "CLOSED" => "simulated channel".to_owned(),
                    _ => "the channel is failing; its messages are parked and retried".to_owned(),
                }),
                circuit_breaker: Some(report.circuit_breaker.clone()),
                pending: Some(report.pending),
                fault: report.fault.clone(),
            },
            None => ComponentHealth {
                status: "SILENT",
                latency_ms: 0.0,
                detail: Some(format!(
                    "no report from this connector in the last {} s",
                    REPORT_VALIDITY.as_secs()
                )),
                circuit_breaker: None,
                pending: None,
                fault: None,
            },
        };
        components.insert(format!("connector_{channel}"), component);
    }
    let up = components.values().all(|c| c.status != "DOWN");
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthReport {
            status: if up { "UP" } else { "DOWN" },
            components,
            timestamp: now_millis(),
        }),
    )
}

/// The answer of `/health/live`.
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    /// Always `UP`.
    status: &'static str,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Liveness)))]
pub async fn live() -> Json<Liveness> {
    Json(Liveness { status: "UP" })
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format 0.0.4.", content_type = "text/plain", body = String)))]
pub async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let mut text = ops.metrics.render();
    text.push_str(&crate::telemetry::process::exposition());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The operations endpoints alone (`/health`, `/health/live`, `/metrics`), for the role processes without the
/// api: routers and connectors.
pub fn router(ops: Arc<Ops>) -> axum::Router {
    axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route("/health/live", axum::routing::get(live))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(ops)
}

/// The OpenAPI document of this api.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document.", content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi_document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_that_does_not_answer_is_down_after_the_probe_timeout() {
        let silent = std::future::pending::<Result<(), String>>();
        let health = probe(silent).await;
        let reports = within(std::future::pending::<Result<Vec<u8>, String>>()).await;
        assert_eq!(reports, Err("no answer within 1000 ms".to_owned()));
        assert_eq!(health.status, "DOWN");
        assert_eq!(health.detail.as_deref(), Some("no answer within 1000 ms"));
        let answering = probe(async { Err::<(), _>("refused") }).await;
        assert_eq!(
            (answering.status, answering.detail.as_deref()),
            ("DOWN", Some("refused"))
        );
    }
}
