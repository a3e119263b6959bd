-- Users' identities on external channels: an identity belongs to one user (the key), and a user has at most one
-- preferred identity (the partial unique index), whatever the writers do.
CREATE TABLE identities (
    platform  TEXT NOT NULL,
    value     TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    verified  BOOLEAN NOT NULL DEFAULT FALSE,
    preferred BOOLEAN NOT NULL DEFAULT FALSE,
    linked_at BIGINT NOT NULL,
    CONSTRAINT identities_pkey PRIMARY KEY (platform, value)
);
CREATE INDEX identities_by_user ON identities (user_id);
CREATE UNIQUE INDEX identities_one_preferred ON identities (user_id) WHERE preferred;
