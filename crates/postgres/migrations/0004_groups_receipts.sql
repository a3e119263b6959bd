-- What a group has beyond its conversation (description, member cap, a version every membership change bumps:
-- changes are compare-and-set on it), its admins, and how far each member has read each conversation.
CREATE TABLE group_details (
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id),
    description     TEXT,
    max_members     BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    CONSTRAINT group_details_pkey PRIMARY KEY (conversation_id)
);

CREATE TABLE group_admins (
    conversation_id TEXT NOT NULL REFERENCES group_details (conversation_id),
    user_id         TEXT NOT NULL,
    CONSTRAINT group_admins_pkey PRIMARY KEY (conversation_id, user_id)
);

CREATE TABLE read_receipts (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    up_to_seq       BIGINT NOT NULL,
    read_at         BIGINT NOT NULL,
    CONSTRAINT read_receipts_pkey PRIMARY KEY (conversation_id, user_id)
);
