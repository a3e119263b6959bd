-- Users, conversations with their members, messages with their status history. Ids are text natural keys;
-- `last_seq` is the per-conversation counter that record_messages bumps under a row lock (gap-free seq).
CREATE TABLE users (
    user_id       TEXT NOT NULL,
    username      TEXT NOT NULL,
    email         TEXT,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (user_id),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE conversations (
    conversation_id TEXT NOT NULL,
    kind            TEXT NOT NULL,
    name            TEXT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT conversations_pkey PRIMARY KEY (conversation_id)
);

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id),
    user_id         TEXT NOT NULL,
    joined_at       BIGINT NOT NULL,
    CONSTRAINT members_pkey PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE messages (
    message_id      TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL,
    recipient_id    TEXT,
    content         TEXT NOT NULL,
    status          TEXT NOT NULL,
    timestamp       BIGINT NOT NULL,
    delivered_at    BIGINT,
    read_at         BIGINT,
    failure_reason  TEXT,
    file_id         TEXT,
    CONSTRAINT messages_pkey PRIMARY KEY (message_id),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq)
);

CREATE TABLE status_history (
    message_id     TEXT NOT NULL,
    status         TEXT NOT NULL,
    at             BIGINT NOT NULL,
    detail         TEXT,
    correlation_id TEXT,
    CONSTRAINT status_history_pkey PRIMARY KEY (message_id, status)
);
