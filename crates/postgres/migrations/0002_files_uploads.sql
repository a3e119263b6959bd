-- File metadata and resumable upload sessions (the bytes live in object storage).
CREATE TABLE files (
    file_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    filename        TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    mimetype        TEXT NOT NULL,
    checksum        TEXT NOT NULL,
    object_key      TEXT NOT NULL,
    uploaded_at     BIGINT NOT NULL,
    CONSTRAINT files_pkey PRIMARY KEY (file_id)
);
CREATE INDEX files_by_conversation ON files (conversation_id);

CREATE TABLE uploads (
    upload_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    uploader_id     TEXT NOT NULL,
    filename        TEXT NOT NULL,
    mimetype        TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    checksum        TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    CONSTRAINT uploads_pkey PRIMARY KEY (upload_id)
);
CREATE INDEX uploads_by_expiry ON uploads (expires_at);

CREATE TABLE upload_ranges (
    upload_id   TEXT NOT NULL,
    range_start BIGINT NOT NULL,
    range_end   BIGINT NOT NULL,
    CONSTRAINT upload_ranges_pkey PRIMARY KEY (upload_id, range_start, range_end)
);
