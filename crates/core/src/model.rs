//! Domain records, as the store keeps them and the services hand them out.

use crate::ids::{ConversationId, Email, FileId, MessageId, UploadId, UserId, Username};
use crate::status::MessageStatus;
use serde::{Deserialize, Serialize};

/// A registered user, without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Server-generated id.
    pub user_id: UserId,
    /// Unique login name.
    pub username: Username,
    /// Optional unique e-mail.
    pub email: Option<Email>,
    /// Registration time (ms).
    pub created_at: i64,
}

/// A user together with the Argon2id hash used to verify a login.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// PHC-format Argon2id hash.
    pub password_hash: String,
}

/// Direct (two people) or group conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    /// A one-to-one conversation.
    Direct,
    /// A conversation of many members.
    Group,
}

impl ConversationKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
}

/// A conversation and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Client-chosen or generated id.
    pub conversation_id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Optional display name.
    pub name: Option<String>,
    /// Who may post and read.
    pub members: Vec<UserId>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Who created it.
    pub created_by: UserId,
}

/// A group: a conversation of type group, with what only groups have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The conversation; its members are in join order (oldest first), which decides an admin hand-over.
    pub conversation: Conversation,
    /// Optional free text.
    pub description: Option<String>,
    /// Members who may add, remove and promote members.
    pub admins: Vec<UserId>,
    /// Largest membership, fixed at creation.
    pub max_members: u32,
    /// Bumped by every membership or admin change, so that changes decided from a stale copy are refused.
    pub version: u64,
}

/// How far one member has read a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReceipt {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The reader.
    pub user_id: UserId,
    /// Every message with a `seq` up to this one is read.
    pub up_to_seq: u64,
    /// When the receipt last moved (ms).
    pub read_at: i64,
}

/// Where a reader stands in one conversation, so that a client can show what is left to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// The conversation's last message `seq` (0 before its first message).
    pub last_seq: u64,
    /// The reader's read receipt, `up_to_seq` (0 without one).
    pub read_up_to: u64,
    /// Messages past `read_up_to` sent by others: the reader's own messages are never unread to them.
    pub unread: u64,
}

/// A stored message, as history and lookups return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Server-generated id.
    pub message_id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Position in its conversation: 1, 2, 3… in acceptance order.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: UserId,
    /// Where it was routed, as the client gave it.
    pub recipient_id: Option<String>,
    /// The text.
    pub content: String,
    /// Current status.
    pub status: MessageStatus,
    /// Acceptance time (ms).
    pub timestamp: i64,
    /// When it became DELIVERED.
    pub delivered_at: Option<i64>,
    /// When it became READ.
    pub read_at: Option<i64>,
    /// Why it FAILED (or, while PENDING, why it waits).
    pub failure_reason: Option<String>,
    /// The attached file, if any.
    pub attachment: Option<FileMeta>,
}

/// One step of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The status reached.
    pub status: MessageStatus,
    /// When (ms).
    pub at: i64,
    /// Channel detail or reason.
    pub detail: Option<String>,
    /// The correlation id of the request or event that caused the change.
    pub correlation_id: Option<String>,
}

/// Which slice of a conversation's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Page size, 1..=100.
    pub limit: u32,
    /// Messages to skip (offset paging).
    pub offset: u64,
    /// Only messages with `seq` greater than this.
    pub after: Option<u64>,
    /// Only messages with `seq` lower than this.
    pub before: Option<u64>,
    /// Oldest first when true.
    pub ascending: bool,
}

/// A page of history; `has_more` says whether the same query would find more past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The messages, in the requested order.
    pub messages: Vec<Message>,
    /// More messages lie beyond this page.
    pub has_more: bool,
}

/// Result of applying one status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The message moved to the new status.
    Applied(Message),
    /// The change was refused by the forward-only rule; the message is unchanged.
    Refused(Message),
    /// No such message.
    UnknownMessage,
}

/// A stored file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Server-generated id.
    pub file_id: FileId,
    /// The conversation whose members may read it.
    pub conversation_id: ConversationId,
    /// Who uploaded it.
    pub uploader_id: UserId,
    /// The client's file name, made safe for headers (no path, no control characters).
    pub filename: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Media type.
    pub mimetype: String,
    /// `sha256:<hex>` of the content.
    pub checksum: String,
    /// Where the bytes are in object storage.
    pub object_key: String,
    /// Upload time (ms).
    pub uploaded_at: i64,
}

/// A resumable upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Random id.
    pub upload_id: UploadId,
    /// Target conversation.
    pub conversation_id: ConversationId,
    /// Who may send chunks and complete it.
    pub uploader_id: UserId,
    /// Safe file name.
    pub filename: String,
    /// Media type.
    pub mimetype: String,
    /// Announced total size.
    pub size_bytes: u64,
    /// Announced `sha256:<hex>`, verified on completion when given.
    pub checksum: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// After this (ms) the session and its chunks are deleted.
    pub expires_at: i64,
}

/// A user's address on an external channel, through which messages to them may also travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Whose it is; an identity belongs to one user.
    pub user_id: UserId,
    /// The channel (`whatsapp`, `instagram`).
    pub platform: String,
    /// The address on it (`+5511999990000`, `@someone`), checked by the recipient rules.
    pub value: String,
    /// Always false until a verification flow exists.
    pub verified: bool,
    /// Messages to the user also go here; at most one per user.
    pub preferred: bool,
    /// When it was linked (ms).
    pub linked_at: i64,
}
