//! The connected sockets of this api instance, by user. A frame is pushed to every socket of its recipients
//! through a bounded queue; a socket whose queue is full is a slow reader and is told to close, never buffered
//! without bound. Caps on sockets per user and in total keep memory and descriptors bounded.

use chat4all_core::ids::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One JSON text frame, shared by every socket it goes to.
pub type Frame = Arc<str>;

/// The hub's bounds.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Sockets one user may hold at once.
    pub per_user: usize,
    /// Sockets this instance holds at once.
    pub total: usize,
    /// Frames waiting for one socket; past it the socket is closed as too slow.
    pub queue: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            per_user: 16,
            total: 10_000,
            queue: 256,
        }
    }
}

/// Why a socket could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user holds `per_user` sockets already.
    UserFull,
    /// The instance holds `total` sockets already.
    InstanceFull,
}

struct Subscriber {
    id: u64,
    frames: mpsc::Sender<Frame>,
    too_slow: CancellationToken,
}

#[derive(Default)]
struct Sockets {
    by_user: HashMap<UserId, Vec<Subscriber>>,
    total: usize,
}

/// The sockets of this instance.
pub struct Hub {
    sockets: Mutex<Sockets>,
    limits: HubLimits,
    next_id: AtomicU64,
    closing: CancellationToken,
}

/// A registered socket: its frames, and the signals that end it. Dropping it unregisters the socket.
pub struct Registration {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
    /// Frames to send, in order.
    pub frames: mpsc::Receiver<Frame>,
    /// Cancelled when a frame had to be dropped because the queue was full.
    pub too_slow: CancellationToken,
    /// Cancelled when the instance shuts down.
    pub closing: CancellationToken,
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: HubLimits) -> Arc<Self> {
        Arc::new(Self {
            sockets: Mutex::default(),
            limits,
            next_id: AtomicU64::new(0),
            closing: CancellationToken::new(),
        })
    }

    /// Registers a socket of `user`, unless a cap is reached.
    pub fn register(self: &Arc<Self>, user: &UserId) -> Result<Registration, Refused> {
        let mut sockets = self.lock();
        if sockets.total >= self.limits.total {
            return Err(Refused::InstanceFull);
        }
        let mine = sockets.by_user.entry(user.clone()).or_default();
        if mine.len() >= self.limits.per_user {
            return Err(Refused::UserFull);
        }
        let (frames, receiver) = mpsc::channel(self.limits.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let too_slow = CancellationToken::new();
        mine.push(Subscriber {
            id,
            frames,
            too_slow: too_slow.clone(),
        });
        sockets.total += 1;
        metrics::gauge!("websocket_connections").set(sockets.total as f64);
        Ok(Registration {
            hub: self.clone(),
            user: user.clone(),
            id,
            frames: receiver,
            too_slow,
            closing: self.closing.child_token(),
        })
    }

    /// Whether any socket is connected: when none is, the fan-out need not even decode the changes.
    pub fn is_empty(&self) -> bool {
        self.lock().total == 0
    }

    /// Queues `frame` for every socket of `users`; returns how many sockets got it. A socket whose queue is full
    /// loses the frame and is told to close.
    pub fn push<'u>(&self, users: impl IntoIterator<Item = &'u UserId>, frame: &Frame) -> usize {
        let sockets = self.lock();
        let mut sent = 0;
        for user in users {
            for subscriber in sockets.by_user.get(user).into_iter().flatten() {
                match subscriber.frames.try_send(frame.clone()) {
                    Ok(()) => sent += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics::counter!("websocket_notifications_dropped_total").increment(1);
                        subscriber.too_slow.cancel();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        metrics::counter!("websocket_notifications_sent_total").increment(sent as u64);
        sent
    }

    /// Tells every socket to close (the instance is shutting down).
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn unregister(&self, user: &UserId, id: u64) {
        let mut sockets = self.lock();
        if let Some(mine) = sockets.by_user.get_mut(user) {
            mine.retain(|s| s.id != id);
            if mine.is_empty() {
                sockets.by_user.remove(user);
            }
            sockets.total -= 1;
        }
        metrics::gauge!("websocket_connections").set(sockets.total as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.user, self.id);
    }
}

/// Registers the hub's series at zero.
pub fn register_metrics() {
    metrics::gauge!("websocket_connections").set(0.0);
    metrics::counter!("websocket_notifications_sent_total").absolute(0);
    metrics::counter!("websocket_notifications_dropped_total").absolute(0);
    let _ = metrics::histogram!("websocket_notification_delay_seconds");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(per_user: usize, total: usize, queue: usize) -> Arc<Hub> {
        Hub::new(HubLimits {
            per_user,
            total,
            queue,
        })
    }

    #[test]
    fn caps_per_user_and_in_total_and_dropping_frees_a_place() {
        let hub = hub(2, 3, 4);
        let (a, b) = (UserId::generate(), UserId::generate());
        let first = hub.register(&a).unwrap();
        let _second = hub.register(&a).unwrap();
        assert_eq!(hub.register(&a).err(), Some(Refused::UserFull));
        let _third = hub.register(&b).unwrap();
        assert_eq!(hub.register(&b).err(), Some(Refused::InstanceFull));
        drop(first);
        assert!(hub.register(&a).is_ok(), "a closed socket frees its place");
    }

    #[tokio::test]
    async fn every_socket_of_a_recipient_gets_the_frame_and_others_do_not() {
        let hub = hub(4, 10, 4);
        let (a, b, c) = (UserId::generate(), UserId::generate(), UserId::generate());
        let (mut a1, mut a2, mut b1, mut c1) = (
            hub.register(&a).unwrap(),
            hub.register(&a).unwrap(),
            hub.register(&b).unwrap(),
            hub.register(&c).unwrap(),
        );
        let frame: Frame = Arc::from("{\"type\":\"x\"}");
        assert_eq!(hub.push([&a, &b], &frame), 3);
        for registration in [&mut a1, &mut a2, &mut b1] {
            assert_eq!(
                registration.frames.recv().await.as_deref(),
                Some("{\"type\":\"x\"}")
            );
        }
        assert!(c1.frames.try_recv().is_err(), "not a recipient");
    }

    #[test]
    fn a_full_queue_marks_the_socket_too_slow_instead_of_growing() {
        let hub = hub(1, 10, 2);
        let a = UserId::generate();
        let registration = hub.register(&a).unwrap();
        let frame: Frame = Arc::from("f");
        assert_eq!(hub.push([&a], &frame), 1);
        assert_eq!(hub.push([&a], &frame), 1);
        assert!(!registration.too_slow.is_cancelled());
        assert_eq!(hub.push([&a], &frame), 0, "the third frame does not fit");
        assert!(registration.too_slow.is_cancelled());
    }
}
