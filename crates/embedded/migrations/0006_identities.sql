-- Users' identities on external channels. An identity belongs to one user (the key), and a user has at most one
-- preferred identity (the partial unique index), whatever the writers do.
CREATE TABLE identities (
    platform  TEXT NOT NULL,
    value     TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    verified  INTEGER NOT NULL DEFAULT 0,
    preferred INTEGER NOT NULL DEFAULT 0,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (platform, value)
) WITHOUT ROWID;
CREATE INDEX identities_by_user ON identities (user_id);
CREATE UNIQUE INDEX identities_one_preferred ON identities (user_id) WHERE preferred = 1;
