//! The JSON bodies of the API, as serde structs (requests and answers).

use serde::{Deserialize, Serialize};

/// A message's delivery status. Statuses only move forward: SENT → PENDING → DELIVERED → READ, or to FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MessageStatus {
    /// Answer of `POST /v1/messages`: durably stored.
    Accepted,
    /// Persisted, being routed.
    Sent,
    /// Its channel is unavailable; it will be retried.
    Pending,
    /// Delivered to its recipient(s).
    Delivered,
    /// Read by its recipient(s).
    Read,
    /// Failed for good (see `failure_reason`).
    Failed,
    /// A status this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl MessageStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Accepted => "ACCEPTED",
            MessageStatus::Sent => "SENT",
            MessageStatus::Pending => "PENDING",
            MessageStatus::Delivered => "DELIVERED",
            MessageStatus::Read => "READ",
            MessageStatus::Failed => "FAILED",
            MessageStatus::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer of `POST /auth/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The new user's id.
    pub user_id: String,
    /// The username.
    pub username: String,
    /// The email, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
}

/// Answer of `POST /auth/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The bearer token (a JWT).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The user the token is for.
    pub user_id: String,
}

/// A message to send (`POST /v1/messages`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The conversation; created by this message when it does not exist.
    pub conversation_id: String,
    /// The text, 1..10240 bytes.
    pub content: String,
    /// Routing: `whatsapp:+<E.164>`, `instagram:@<handle>`, a user id, or absent (the other members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// A file uploaded to the same conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// With a user `recipient_id`: send through their identity on this channel (`whatsapp`, `instagram`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// How long a channel may keep trying, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_seconds: Option<u64>,
}

impl NewMessage {
    /// A text message to a conversation.
    pub fn text(conversation_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            conversation_id: conversation_id.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// Answer of `POST /v1/messages` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The message's id.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// `ACCEPTED`.
    pub status: MessageStatus,
    /// Acceptance time (ms).
    pub timestamp: i64,
}

/// An attachment's metadata inside a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// MIME type.
    pub mimetype: String,
    /// `sha256:<hex>`.
    pub checksum: String,
}

/// A message, from history, `GET /v1/messages/{id}` or a `new_message` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Position in the conversation (1, 2, 3… in acceptance order).
    pub seq: u64,
    /// Who sent it.
    pub sender_id: String,
    /// Where it was routed, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// The text.
    pub content: String,
    /// Current status (in a frame: `SENT`).
    pub status: MessageStatus,
    /// Acceptance time (ms).
    pub timestamp: i64,
    /// Delivery time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// Read time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Its attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The attachment's metadata (not in frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_metadata: Option<FileMetadata>,
    /// A time-limited link to the attachment (not in frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_url: Option<String>,
}

/// One step of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The status reached.
    pub status: MessageStatus,
    /// When (ms).
    pub at: i64,
    /// Why or how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Answer of `GET /v1/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDetail {
    /// The message.
    #[serde(flatten)]
    pub message: Message,
    /// Every status it went through.
    #[serde(default)]
    pub status_history: Vec<StatusChange>,
    /// Members whose read receipt reaches it, its sender aside.
    #[serde(default)]
    pub read_by: Vec<String>,
}

/// Answer of `POST /v1/messages/{id}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    /// The message.
    pub message_id: String,
    /// `READ` once every other member read it, else `DELIVERED`.
    pub status: MessageStatus,
    /// The caller's read time (ms).
    pub read_at: i64,
}

/// Answer of `POST /v1/conversations/{id}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The conversation.
    pub conversation_id: String,
    /// The reader.
    pub user_id: String,
    /// Everything up to this `seq` is read.
    pub up_to_seq: u64,
    /// When the receipt last moved (ms).
    pub read_at: i64,
}

/// Sort order of a history page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Which history page to get (`GET /v1/conversations/{id}/messages`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Page size, 1..100 (server default 50).
    pub limit: Option<u32>,
    /// Only messages with a `seq` above this.
    pub after: Option<u64>,
    /// Only messages with a `seq` below this.
    pub before: Option<u64>,
    /// Skip this many (offset paging).
    pub offset: Option<u64>,
    /// Sort order.
    pub order: Option<Order>,
}

/// Paging facts of a history page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// The page size asked.
    pub limit: u32,
    /// The offset asked.
    pub offset: u64,
    /// Messages in this page.
    pub returned: usize,
    /// More messages follow.
    pub has_more: bool,
    /// The `seq` to pass as `after` (asc) or `before` (desc) for the next page.
    #[serde(default)]
    pub next_cursor: Option<u64>,
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The conversation.
    pub conversation_id: String,
    /// The messages, in the order asked.
    pub messages: Vec<Message>,
    /// Paging facts.
    pub pagination: Pagination,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its id.
    pub conversation_id: String,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Member user ids.
    #[serde(default)]
    pub members: Vec<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Creator's user id.
    pub created_by: String,
    /// The last message's `seq` (listed conversations only; 0 otherwise).
    #[serde(default)]
    pub last_seq: u64,
    /// The caller's read receipt (listed conversations only).
    #[serde(default)]
    pub read_up_to: u64,
    /// Messages past the receipt sent by others (listed conversations only).
    #[serde(default)]
    pub unread: u64,
}

/// A conversation to create (`POST /v1/conversations`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewConversation {
    /// Generated by the server when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// `direct` (exactly one other member) or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The other members' user ids.
    pub members: Vec<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A page of the caller's conversations, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationPage {
    /// The conversations.
    pub conversations: Vec<Conversation>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A stored file (`POST /v1/files`, `POST /v1/uploads/{id}/complete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Its id.
    pub file_id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// MIME type.
    pub mimetype: String,
    /// `sha256:<hex>`.
    pub checksum: String,
    /// Upload time (ms).
    pub uploaded_at: i64,
    /// A time-limited link usable without the token.
    pub download_url: String,
    /// When the link expires (ms).
    pub expires_at: i64,
}

/// Answer of `GET /v1/files/{id}/download`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadLink {
    /// The file.
    pub file_id: String,
    /// File name.
    pub filename: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// MIME type.
    pub mimetype: String,
    /// `sha256:<hex>`.
    pub checksum: String,
    /// A time-limited link usable without the token.
    pub download_url: String,
    /// When it expires (ms).
    pub expires_at: i64,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// A resumable upload to start (`POST /v1/uploads`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUpload {
    /// The conversation the file goes to.
    pub conversation_id: String,
    /// File name.
    pub filename: String,
    /// Total size in bytes.
    pub size_bytes: u64,
    /// MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mimetype: Option<String>,
    /// `sha256:<hex>`, checked on completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// The state of a resumable upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Its id.
    pub upload_id: String,
    /// The conversation the file goes to.
    pub conversation_id: String,
    /// File name.
    pub filename: String,
    /// Total size.
    pub size_bytes: u64,
    /// Bytes received so far.
    pub received_bytes: u64,
    /// Received ranges, `[start, end)`.
    pub ranges: Vec<[u64; 2]>,
    /// Every byte is there.
    pub complete: bool,
    /// The largest chunk the server takes.
    pub max_chunk_bytes: u64,
    /// When the session expires (ms).
    pub expires_at: i64,
}

/// A group (`group_id` = `conversation_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its id.
    pub group_id: String,
    /// Its conversation (same id).
    pub conversation_id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Members, oldest first.
    pub member_ids: Vec<String>,
    /// Admins.
    pub admin_ids: Vec<String>,
    /// Most members allowed.
    pub max_members: u32,
    /// Creator.
    pub created_by: String,
    /// Creation time (ms).
    pub created_at: i64,
}

/// A group to create (`POST /v1/groups`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewGroup {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Members besides the creator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initial_members: Vec<String>,
}

/// A channel identity linked to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user.
    pub user_id: String,
    /// `whatsapp` or `instagram`.
    pub platform: String,
    /// E.164 number or `@handle`.
    pub value: String,
    /// Always false for now.
    pub verified: bool,
    /// Messages to the user also go there.
    pub preferred: bool,
    /// Link time (ms).
    pub linked_at: i64,
}

/// Answer of `DELETE /v1/users/identities/{platform}/{value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlinked {
    /// Platform.
    pub platform: String,
    /// Value.
    pub value: String,
    /// True.
    pub unlinked: bool,
}
