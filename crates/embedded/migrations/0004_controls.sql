-- Control documents shared between roles (injected faults, connector reports), each valid until a time.
CREATE TABLE controls (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
