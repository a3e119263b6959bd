//! The in-process group coordinator: shares each subscribed topic's partitions among a group's members (range
//! assignment over the members in name order) and moves a partition only once its owner has dropped the
//! partition's consumer, which it does after committing. Rebalancing is incremental, like Kafka's cooperative
//! protocol: partitions that stay put keep being consumed while others move.

use crate::sqlite::lock;
use async_trait::async_trait;
use chat4all_core::ports::{GroupMember, LogError, PartitionConsumer, Rebalance};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Opens the consumer of one partition for a group, holding `lease`.
pub(super) type OpenConsumer =
    Box<dyn Fn(&GroupKey, u32, Lease) -> Box<dyn PartitionConsumer> + Send + Sync>;

/// One group's subscription to one topic.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    pub(super) group: String,
    pub(super) topic: String,
}

/// Shares partitions among group members (see the module documentation).
pub(super) struct Coordinator {
    partitions: u32,
    open: OpenConsumer,
    /// `None` once the log is closed.
    groups: Mutex<Option<HashMap<Arc<GroupKey>, Group>>>,
    next_member: AtomicU64,
}

#[derive(Default)]
struct Group {
    /// Sorted by (name, id), which fixes the assignment.
    members: Vec<Member>,
    /// Partitions whose consumer is out (or about to be): owned until it is dropped.
    holders: HashMap<u32, Holder>,
}

struct Member {
    id: u64,
    name: String,
    events: mpsc::UnboundedSender<Rebalance>,
}

struct Holder {
    member: u64,
    revoking: bool,
}

/// What to tell members once the coordinator's lock is released (dropping an undelivered consumer re-enters it).
enum Notice {
    Assign(mpsc::UnboundedSender<Rebalance>, u64, Vec<u32>),
    Revoke(mpsc::UnboundedSender<Rebalance>, Vec<u32>),
}

impl Coordinator {
    pub(super) fn new(partitions: u32, open: OpenConsumer) -> Arc<Self> {
        Arc::new(Self {
            partitions,
            open,
            groups: Mutex::new(Some(HashMap::new())),
            next_member: AtomicU64::new(0),
        })
    }

    /// Adds a member to `key`'s group; its first assignment arrives as an event.
    pub(super) fn join(
        self: &Arc<Self>,
        key: GroupKey,
        name: &str,
    ) -> Result<SqliteMember, LogError> {
        let (events, receiver) = mpsc::unbounded_channel();
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let key = Arc::new(key);
        let name = name.to_owned();
        self.change(&key, |group| {
            let at = group
                .members
                .partition_point(|m| (&m.name, m.id) < (&name, id));
            group.members.insert(at, Member { id, name, events });
        })
        .ok_or(LogError::Closed)?;
        Ok(SqliteMember {
            coordinator: self.clone(),
            key,
            id,
            events: receiver,
        })
    }

    /// Closes every subscription: members' `next_event` then fails with `Closed`.
    pub(super) fn close(&self) {
        let groups = lock(&self.groups).take();
        drop(groups);
    }

    /// Applies `edit` to the group, rebalances it and tells the members; `None` when the log is closed.
    fn change(self: &Arc<Self>, key: &Arc<GroupKey>, edit: impl FnOnce(&mut Group)) -> Option<()> {
        let notices = {
            let mut guard = lock(&self.groups);
            let groups = guard.as_mut()?;
            let group = groups.entry(key.clone()).or_default();
            edit(group);
            let notices = self.plan(group);
            if group.members.is_empty() && group.holders.is_empty() {
                groups.remove(key);
            }
            notices
        };
        for notice in notices {
            match notice {
                Notice::Assign(events, member, partitions) => {
                    let consumers = partitions
                        .into_iter()
                        .map(|partition| {
                            let lease = Lease {
                                coordinator: self.clone(),
                                key: key.clone(),
                                partition,
                                member,
                            };
                            (self.open)(key, partition, lease)
                        })
                        .collect();
                    // A member that left meanwhile drops them, which releases them again.
                    let _ = events.send(Rebalance::Assigned(consumers));
                }
                Notice::Revoke(events, partitions) => {
                    let _ = events.send(Rebalance::Revoked(partitions));
                }
            }
        }
        Some(())
    }

    /// Compares who holds each partition with who should, and decides what to assign and revoke.
    fn plan(&self, group: &mut Group) -> Vec<Notice> {
        let members = group.members.len() as u64;
        let mut assign: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut revoke: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for partition in 0..self.partitions {
            let target = (members > 0).then(|| {
                let index = u64::from(partition) * members / u64::from(self.partitions);
                group.members[index as usize].id
            });
            match (group.holders.get_mut(&partition), target) {
                (None, Some(target)) => {
                    group.holders.insert(
                        partition,
                        Holder {
                            member: target,
                            revoking: false,
                        },
                    );
                    assign.entry(target).or_default().push(partition);
                }
                (Some(holder), target) if !holder.revoking && target != Some(holder.member) => {
                    holder.revoking = true;
                    revoke.entry(holder.member).or_default().push(partition);
                }
                _ => {}
            }
        }
        let sender = |id: u64| {
            group
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.events.clone())
        };
        let revokes = revoke
            .into_iter()
            .filter_map(|(id, partitions)| Some(Notice::Revoke(sender(id)?, partitions)));
        let assigns = assign
            .into_iter()
            .filter_map(|(id, partitions)| Some(Notice::Assign(sender(id)?, id, partitions)));
        revokes.chain(assigns).collect()
    }
}

/// A member's hold on one partition; dropped with the partition's consumer, it lets the partition move on.
pub(super) struct Lease {
    coordinator: Arc<Coordinator>,
    key: Arc<GroupKey>,
    partition: u32,
    member: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (partition, member) = (self.partition, self.member);
        self.coordinator.change(&self.key, |group| {
            if group
                .holders
                .get(&partition)
                .is_some_and(|h| h.member == member)
            {
                group.holders.remove(&partition);
            }
        });
    }
}

/// A member of a group's subscription in this process.
pub(super) struct SqliteMember {
    coordinator: Arc<Coordinator>,
    key: Arc<GroupKey>,
    id: u64,
    events: mpsc::UnboundedReceiver<Rebalance>,
}

#[async_trait]
impl GroupMember for SqliteMember {
    async fn next_event(&mut self) -> Result<Rebalance, LogError> {
        self.events.recv().await.ok_or(LogError::Closed)
    }
}

impl Drop for SqliteMember {
    fn drop(&mut self) {
        let id = self.id;
        self.coordinator
            .change(&self.key, |group| group.members.retain(|m| m.id != id));
    }
}
