-- Idempotency-Key reservations of messages and uploads, and control documents shared between roles.
CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    timestamp       BIGINT NOT NULL,
    appended        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE file_idempotency_keys (
    user_id     TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT file_idempotency_keys_pkey PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX file_idempotency_keys_by_age ON file_idempotency_keys (created_at);

CREATE TABLE controls (
    control_key   TEXT NOT NULL,
    control_value TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    CONSTRAINT controls_pkey PRIMARY KEY (control_key)
);
