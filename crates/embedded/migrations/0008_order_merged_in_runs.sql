-- A conversation's order is no longer an index of `messages`: that index took one scattered leaf a message (each
-- conversation's end is a page of its own), the writes the store's commits and checkpoints spent most on.
-- A message's entry now goes to `recent_messages`, appended in arrival order and marked with one of a few slices
-- (chosen by its conversation), and the store moves one slice at a time into `message_order` in a sorted run, so
-- each conversation's leaf is written once a run instead of once a message (`crates/embedded/src/store/order.rs`). The next seq is counted in
-- `conversations.last_seq` (a few pages for all conversations, instead of a leaf each).
-- `message_no` numbers the messages in arrival order. It is declared, not SQLite's implicit rowid, because the
-- order's entries point at it and `VACUUM` (the backups in docs/operations.md) may renumber an implicit rowid.
CREATE TABLE messages_rebuilt (
    message_no      INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    sender_id       TEXT NOT NULL,
    recipient_id    TEXT,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    delivered_at    INTEGER,
    read_at         INTEGER,
    failure_reason  TEXT,
    file_id         TEXT
);
INSERT INTO messages_rebuilt (message_no, message_id, conversation_id, seq, sender_id, recipient_id, content, status,
        timestamp, delivered_at, read_at, failure_reason, file_id)
    SELECT rowid, message_id, conversation_id, seq, sender_id, recipient_id, content, status, timestamp, delivered_at,
        read_at, failure_reason, file_id
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;

CREATE TABLE message_order (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    message_no      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
INSERT INTO message_order (conversation_id, seq, message_no)
    SELECT conversation_id, seq, message_no FROM messages ORDER BY conversation_id, seq;

CREATE TABLE recent_messages (
    message_no      INTEGER PRIMARY KEY,
    slice           INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL
);
-- Each slice's recent entries up to `merged_through` are in `message_order` (none is, without a row).
CREATE TABLE order_runs (
    slice          INTEGER PRIMARY KEY,
    merged_through INTEGER NOT NULL
);

ALTER TABLE conversations ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET last_seq = COALESCE(
    (SELECT MAX(o.seq) FROM message_order o WHERE o.conversation_id = conversations.conversation_id), 0);
