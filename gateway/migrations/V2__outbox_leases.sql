-- Several gateway instances forward from one outbox: an instance claims
-- envelopes with a lease (claimed_by, lease_until, seconds since 1970) and
-- renews it while it forwards them; the envelopes of an instance that died
-- are claimed by another once its lease has run out. Claims take rows with
-- FOR UPDATE SKIP LOCKED, so that two instances never claim the same one.
ALTER TABLE outbox ADD COLUMN claimed_by text;
ALTER TABLE outbox ADD COLUMN lease_until bigint;
CREATE INDEX outbox_by_queued_at ON outbox (queued_at);
