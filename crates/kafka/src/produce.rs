//! The producer: librdkafka's, its delivery reports served by a thread of its own that waits a second at a time.
//!
//! rdkafka's `FutureProducer` serves them from a thread that polls for 100 ms at a time, and each poll spins
//! through its last fraction of a millisecond (its deadline is checked in a loop, librdkafka waits in whole
//! milliseconds): about 0.8 % of a core in every process, idle or not (`perf record` on that thread: all of it in
//! `Deadline::elapsed`), which is most of what a router held to 0.02 of a core has. A report still wakes the
//! thread at once; only the spin and the check for shutdown happen once a second.

use rdkafka::ClientContext;
use rdkafka::client::Client;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the delivery thread waits for a report at a time.
const WAIT: Duration = Duration::from_secs(1);

/// Where a record landed (partition, offset), or why it did not.
pub(crate) type Delivery = Result<(i32, i64), KafkaError>;

/// A record to send, its delivery answered on a channel.
pub(crate) type Outgoing<'a> = BaseRecord<'a, [u8], [u8], Box<oneshot::Sender<Delivery>>>;

/// Answers each record's channel from its delivery report.
pub(crate) struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Delivery>>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let delivery = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        let _ = reply.send(delivery);
    }
}

/// A shared producer. The delivery thread holds it too: after the last clone is dropped, the thread ends within
/// a second and the producer closes then (librdkafka flushes what is queued).
#[derive(Clone)]
pub(crate) struct Producer(Arc<Handle>);

struct Handle {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Producer {
    pub(crate) fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-deliveries".into())
            .spawn(move || {
                while !stopping.load(Ordering::Acquire) {
                    serving.poll(WAIT);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Ok(Self(Arc::new(Handle { producer, stop })))
    }

    /// Queues `record`; the receiver gets its delivery. A full queue gives the record back (rdkafka's own
    /// signature, hence the large error).
    #[allow(clippy::result_large_err)]
    pub(crate) fn send<'a>(&self, record: Outgoing<'a>) -> Result<(), (KafkaError, Outgoing<'a>)> {
        self.0.producer.send(record)
    }

    pub(crate) fn client(&self) -> &Client<Reports> {
        self.0.producer.client()
    }

    pub(crate) fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.0.producer.flush(timeout)
    }
}
