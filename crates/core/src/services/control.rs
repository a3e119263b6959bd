//! Control between roles, through the store rather than shared memory, so that it works the same when the roles
//! run in separate processes: an operator's injected fault reaches the connectors of its channel, and every
//! connector's report (circuit breaker, parked messages, fault in force) reaches `/health` wherever it runs.

use crate::error::ServiceError;
use crate::ports::Stores;
use crate::time::now_millis;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a connector's report stays valid: one that stops reporting for this long is shown as silent.
pub const REPORT_VALIDITY: Duration = Duration::from_secs(10);

const FAULT_PREFIX: &str = "fault/";
const REPORT_PREFIX: &str = "connector/";

/// What a connector last said about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorReport {
    /// Its channel.
    pub channel: String,
    /// `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub circuit_breaker: String,
    /// Messages parked as PENDING.
    pub pending: i64,
    /// The injected fault it applies, if any (`down`, `flaky`, `slow`).
    pub fault: Option<String>,
}

/// A fault with the time it ends (ms).
#[derive(Serialize, Deserialize)]
struct Timed<F> {
    fault: F,
    until: i64,
}

/// Reads and writes the control documents.
#[derive(Clone)]
pub struct Control {
    stores: Stores,
}

impl Control {
    /// Control documents kept in `store`.
    pub fn new(stores: &Stores) -> Self {
        Self {
            stores: stores.clone(),
        }
    }

    /// Puts `fault` in force on `channel` for `duration`; `None` ends the fault in force.
    pub async fn set_fault<F: Serialize>(
        &self,
        channel: &str,
        fault: Option<&F>,
        duration: Duration,
    ) -> Result<(), ServiceError> {
        let now = now_millis();
        let until = match fault {
            Some(_) => now.saturating_add(duration.as_millis() as i64),
            None => now,
        };
        let value = serde_json::to_string(&Timed { fault, until })
            .map_err(|e| ServiceError::Internal(format!("cannot encode a fault: {e}")))?;
        self.stores
            .control
            .put_control(&format!("{FAULT_PREFIX}{channel}"), &value, until)
            .await?;
        Ok(())
    }

    /// The fault in force on `channel`, with when it ends (ms).
    pub async fn fault<F: DeserializeOwned>(
        &self,
        channel: &str,
    ) -> Result<Option<(F, i64)>, ServiceError> {
        let key = format!("{FAULT_PREFIX}{channel}");
        let documents = self.stores.control.controls(&key, now_millis()).await?;
        Ok(documents
            .into_iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, value)| decoded::<Timed<Option<F>>>(&key, &value))
            .and_then(|timed| timed.fault.map(|fault| (fault, timed.until))))
    }

    /// Records what a connector says about itself, valid for [`REPORT_VALIDITY`].
    pub async fn report(&self, report: &ConnectorReport) -> Result<(), ServiceError> {
        let value = serde_json::to_string(report)
            .map_err(|e| ServiceError::Internal(format!("cannot encode a report: {e}")))?;
        let until = now_millis() + REPORT_VALIDITY.as_millis() as i64;
        self.stores
            .control
            .put_control(&format!("{REPORT_PREFIX}{}", report.channel), &value, until)
            .await?;
        Ok(())
    }

    /// The connectors' reports still valid, by channel.
    pub async fn reports(&self) -> Result<Vec<ConnectorReport>, ServiceError> {
        let documents = self
            .stores
            .control
            .controls(REPORT_PREFIX, now_millis())
            .await?;
        Ok(documents
            .iter()
            .filter_map(|(key, value)| decoded(key, value))
            .collect())
    }
}

/// A document decoded, or skipped with a warning: one bad document must not hide the others.
fn decoded<T: DeserializeOwned>(key: &str, value: &str) -> Option<T> {
    serde_json::from_str(value)
        .inspect_err(|e| tracing::warn!(key, error = %e, "unreadable control document skipped"))
        .ok()
}
