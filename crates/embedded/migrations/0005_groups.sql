-- What a group conversation has beyond its members: a description, a member cap and a version that every
-- membership change bumps (changes are compare-and-set on it).
CREATE TABLE group_details (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations (conversation_id),
    description     TEXT,
    max_members     INTEGER NOT NULL,
    version         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_admins (
    conversation_id TEXT NOT NULL REFERENCES group_details (conversation_id),
    user_id         TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;

-- How far each member has read each conversation: every message with seq <= up_to_seq.
CREATE TABLE read_receipts (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    up_to_seq       INTEGER NOT NULL,
    read_at         INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
