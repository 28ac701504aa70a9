-- The forwarder serves each next hop's envelopes in the order they were
-- queued, a window at a time: `seq` numbers them in that order, and
-- outbox_line reads a hop's first ones without a scan. Envelopes that
-- expire while they wait are found by outbox_by_expiry.
ALTER TABLE outbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX outbox_line ON outbox (next_hop, seq);
CREATE INDEX outbox_by_expiry ON outbox (expires_at);
