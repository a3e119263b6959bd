-- A message's seq is the next after its conversation's last in the (conversation_id, seq) index: the counter
-- column it replaces was one more row the router rewrote for every message.
ALTER TABLE conversations DROP COLUMN last_seq;
