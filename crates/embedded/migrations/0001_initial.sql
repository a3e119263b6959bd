CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    name            TEXT,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id),
    user_id         TEXT NOT NULL,
    joined_at       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE messages (
    message_id      TEXT PRIMARY KEY,
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
    UNIQUE (conversation_id, seq)
);

CREATE TABLE status_history (
    message_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    detail     TEXT,
    PRIMARY KEY (message_id, status)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    appended        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
