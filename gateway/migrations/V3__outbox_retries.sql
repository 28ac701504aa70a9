-- The forwarder's retry state of each queued envelope: how often it was
-- offered, when next (milliseconds since 1970), and the last error.
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;
