CREATE TABLE files (
    file_id         TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    filename        TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    mimetype        TEXT NOT NULL,
    checksum        TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    uploaded_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX files_by_conversation ON files (conversation_id);

ALTER TABLE messages ADD COLUMN file_id TEXT;

CREATE TABLE file_idempotency_keys (
    user_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX file_idempotency_keys_by_age ON file_idempotency_keys (created_at);

CREATE TABLE uploads (
    upload_id       TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    filename        TEXT NOT NULL,
    mimetype        TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    checksum        TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE upload_ranges (
    upload_id TEXT NOT NULL,
    start     INTEGER NOT NULL,
    end       INTEGER NOT NULL,
    PRIMARY KEY (upload_id, start, end)
) WITHOUT ROWID;
