//! The roles a process runs, one starter each: `api` (HTTP), `router`, `connector` (one per channel) and
//! `housekeeping` (heartbeats and consumer lag). Every task a role starts is tracked by one [`Tasks`]: one token
//! tells them all to stop, one tracker waits for them.

pub mod api;
pub mod connector;
mod consume;
pub mod housekeeping;
pub mod router;

use chat4all_core::events::Topics;
use chat4all_core::ports::{EventLog, Stores};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The backends every role is started on.
#[derive(Clone)]
pub struct Backends {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// The store of each aggregate.
    pub stores: Stores,
    /// Topic names.
    pub topics: Topics,
}

/// Every task of the process's roles.
#[derive(Clone, Default)]
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// Runs `task` until it ends; it learns of shutdown from the token it is given.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(
        &self,
        task: impl FnOnce(CancellationToken) -> F,
    ) {
        self.tracker.spawn(task(self.stop.clone()));
    }

    /// Tells every task to stop (consumers after their current batch, committed; the HTTP server after its
    /// in-flight requests) and waits for them, at most `grace`; false when some did not stop in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
