ALTER TABLE status_history ADD COLUMN correlation_id TEXT;
