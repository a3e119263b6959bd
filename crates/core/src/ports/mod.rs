//! Ports: the traits through which the use cases reach the outside world. Each has an embedded adapter and may
//! have distributed ones; the wiring in the server picks them from configuration.

mod channel;
mod log;
mod objects;
mod store;

pub use channel::{Channel, ChannelError, ChannelReceipt};
pub use log::{
    EventLog, GroupMember, LogError, OutgoingRecord, PartitionConsumer, Rebalance, Record,
    RecordPosition, Tail, partition_for,
};
pub use objects::{ByteStream, ObjectError, ObjectKey, ObjectStore, ObjectWriter};
pub use store::{
    AccountStore, Backend, ControlStore, ConversationCursor, ConversationStore, FileStore,
    GroupStore, IdempotencyStore, IdempotentRequest, IdentityStore, Linked, MembershipChange,
    MessageStore, ReceiptStore, Recorded, Settle, StatusWrite, Store, StoreError, Stores,
};
