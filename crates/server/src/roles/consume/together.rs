//! Many partitions' batches handled as one run of the handler.

use super::BatchHandler;
use chat4all_core::ServiceError;
use chat4all_core::ports::Record;
use futures::FutureExt;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use tokio::sync::{mpsc, oneshot};

/// A batch that failed: why, and its records (`None` when they were lost with the runner, which happens only
/// when the runtime stops; nothing was committed, so they are read again after a restart).
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) error: ServiceError,
    pub(super) records: Option<Vec<Record>>,
}

impl Failed {
    /// `records` failed with `error`.
    fn new(error: ServiceError, records: Vec<Record>) -> Self {
        Self {
            error,
            records: Some(records),
        }
    }
}

/// A batch waiting for the run of the handler that carries it, and where to answer.
type Waiting = (Vec<Record>, oneshot::Sender<Result<(), Failed>>);

/// Runs the batches of many partition loops together: while the handler runs, the batches that arrive wait, then
/// go through as one run, and each loop gets that run's outcome (and commits its own partition once it succeeds,
/// or gets its own records back when it failed). Every run costs its store and log round trips whatever its size,
/// so eight partitions each ready with a few records cost one run instead of eight. Order holds: a loop hands
/// over its next batch only after the last one's outcome, so a run carries at most one batch per partition.
#[derive(Clone)]
pub struct Together {
    batches: mpsc::UnboundedSender<Waiting>,
}

/// [`Together`] around `handler`; its runner ends when the last copy is dropped, after answering every batch it
/// took.
pub fn together(handler: BatchHandler) -> Together {
    let (batches, mut waiting) = mpsc::unbounded_channel::<Waiting>();
    tokio::spawn(async move {
        while let Some((mut records, reply)) = waiting.recv().await {
            let mut parts = vec![(records.len(), reply)];
            while let Ok((more, reply)) = waiting.try_recv() {
                parts.push((more.len(), reply));
                records.extend(more);
            }
            // A panic fails the run like an error: the records stay here, so the loops retry them, and the
            // runner goes on for every other partition.
            let outcome = AssertUnwindSafe(handler(&records))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panicked(panic.as_ref())));
            match outcome {
                Ok(()) => parts.into_iter().for_each(|(_, reply)| {
                    let _ = reply.send(Ok(()));
                }),
                Err(error) => {
                    // Each loop's records are a run of the merged batch, in the order the loops arrived.
                    for (len, reply) in parts.into_iter().rev() {
                        let own = records.split_off(records.len() - len);
                        let _ = reply.send(Err(Failed::new(error.clone(), own)));
                    }
                }
            }
        }
    });
    Together { batches }
}

impl Together {
    /// Runs `records` in the next run; when it fails, hands them back with the reason.
    pub(super) async fn run(&self, records: Vec<Record>) -> Result<(), Failed> {
        let stopped = || ServiceError::Unavailable("the batch runner stopped".into());
        let (reply, outcome) = oneshot::channel();
        if let Err(unsent) = self.batches.send((records, reply)) {
            return Err(Failed::new(stopped(), unsent.0.0));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(Failed {
                error: stopped(),
                records: None,
            })
        })
    }
}

/// The error a panicking handler's run fails with.
fn panicked(panic: &(dyn Any + Send)) -> ServiceError {
    let why = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    ServiceError::Internal(format!("the batch handler panicked: {why}"))
}
