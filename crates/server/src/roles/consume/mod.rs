//! The consume loop every worker shares. A role joins its group's subscription to a topic; one task per
//! membership runs a loop for each partition it is assigned and, on revocation or shutdown, stops those loops
//! (each finishes its batch and commits) before the partitions are let go. The batch loop polls, processes,
//! commits only once the work is durable, and retries the same batch (with backoff) while processing fails. It
//! commits each batch in the background and waits only for its last commit, when it stops: a batch never waits
//! for the one before to be marked, and a crash replays at most the batches whose marks were still in flight.
//! Where partitions need no loop of their own (`consume_all`), their batches are handled together; a handler
//! that panics fails its run like an error does, and the run is retried with its records.
//!
//! Where each part lives: `batch` is the loop over one partition (poll, wait a little for more when the batch is
//! small, process with retries, commit), `together` the runner that handles many partitions' batches as one run.

mod batch;
mod together;

use super::Tasks;
use batch::run;
use chat4all_core::ServiceError;
use chat4all_core::ports::{EventLog, GroupMember, PartitionConsumer, Rebalance, Record};
use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use std::collections::HashMap;
use std::sync::Arc;
use together::together;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Processes one batch; must only return `Ok` once its effects are durable. It borrows the records: the runner
/// keeps them, so a batch that fails, or whose handler panics, is retried without having been copied.
pub type BatchHandler =
    Arc<dyn for<'a> Fn(&'a [Record]) -> BoxFuture<'a, Result<(), ServiceError>> + Send + Sync>;

/// Consumes one assigned partition until its token is cancelled, committing what it finished before it returns
/// (the consumer it drops then releases the partition).
pub type PartitionLoop = Arc<
    dyn Fn(Box<dyn PartitionConsumer>, CancellationToken) -> BoxFuture<'static, ()> + Send + Sync,
>;

impl Tasks {
    /// Consumes `topic` for `group` in batches handed to `handler`, on the partitions this process is assigned;
    /// batches of several partitions that are ready at once go to `handler` as one (see [`together`]).
    pub async fn consume_all(
        &self,
        log: &Arc<dyn EventLog>,
        group: &str,
        topic: &str,
        handler: BatchHandler,
    ) -> anyhow::Result<()> {
        let handler = together(handler);
        let label = format!("{group}/{topic}");
        let each: PartitionLoop = Arc::new(move |consumer, stop| {
            let name = format!("{label}/{}", consumer.partition());
            run(consumer, handler.clone(), stop, name).boxed()
        });
        self.consume_partitions(log, group, topic, each).await
    }

    /// Joins `group`'s subscription to `topic` and runs `each` on every partition assigned to this process.
    pub async fn consume_partitions(
        &self,
        log: &Arc<dyn EventLog>,
        group: &str,
        topic: &str,
        each: PartitionLoop,
    ) -> anyhow::Result<()> {
        let member = log
            .subscribe(group, topic, &format!("chat4all-{}", std::process::id()))
            .await?;
        let name = format!("{group}/{topic}");
        self.spawn(move |stop| membership(member, each, stop, name));
        Ok(())
    }
}

/// Follows the member's assignment until shutdown, then stops its partition loops and leaves the group.
async fn membership(
    mut member: Box<dyn GroupMember>,
    each: PartitionLoop,
    stop: CancellationToken,
    name: String,
) {
    let mut running: HashMap<u32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = member.next_event() => event,
        };
        match event {
            Ok(Rebalance::Assigned(consumers)) => {
                rebalanced(&name, "assigned");
                for consumer in consumers {
                    let (partition, token) = (consumer.partition(), stop.child_token());
                    tracing::info!(consumer = name, partition, "partition assigned");
                    let handle = tokio::spawn(each(consumer, token.clone()));
                    running.insert(partition, (token, handle));
                }
            }
            Ok(Rebalance::Revoked(partitions)) => {
                rebalanced(&name, "revoked");
                tracing::info!(consumer = name, ?partitions, "partitions revoked");
                finish(partitions.iter().filter_map(|p| running.remove(p)), &name).await;
            }
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "subscription ended");
                break;
            }
        }
        metrics::gauge!("consumer_partitions_owned", "consumer" => name.clone())
            .set(running.len() as f64);
    }
    finish(running.into_values(), &name).await;
    metrics::gauge!("consumer_partitions_owned", "consumer" => name.clone()).set(0.0);
    drop(member); // Leaves only now, every partition committed and released.
}

/// Counts a rebalance event of this process's member (`change`: assigned or revoked).
fn rebalanced(consumer: &str, change: &'static str) {
    metrics::counter!("consumer_rebalances_total", "consumer" => consumer.to_owned(), "change" => change)
        .increment(1);
}

/// Stops partition loops and waits until each has committed and dropped its consumer.
async fn finish(loops: impl Iterator<Item = (CancellationToken, JoinHandle<()>)>, name: &str) {
    let handles: Vec<_> = loops
        .map(|(token, handle)| {
            token.cancel();
            handle
        })
        .collect();
    for ended in join_all(handles).await {
        if let Err(e) = ended {
            tracing::error!(consumer = name, error = %e, "a partition loop panicked");
        }
    }
}

#[cfg(test)]
mod tests;
