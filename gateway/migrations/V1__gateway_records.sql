-- The gateway's records on PostgreSQL (gateway/src/store/postgres.rs; the
-- schema is described in ARCHITECTURE.md). Values are the deterministic
-- CBOR the redb store keeps; what is looked up or locked by is a column.
-- Times are seconds since 1970 (UTC).

-- People by recipient (bsn:…, eidas:…); a linked identity's record names
-- the entry it is linked to inside its CBOR.
CREATE TABLE people (
    recipient text PRIMARY KEY,
    record    bytea NOT NULL
);

-- Each person's change history, oldest first by seq; at most
-- MAX_HISTORY_PER_PERSON entries per person are kept.
CREATE TABLE history (
    recipient text   NOT NULL,
    seq       bigint NOT NULL,
    entry     bytea  NOT NULL,
    PRIMARY KEY (recipient, seq)
);

-- Login nonces seen (single use), with the digest of the proof that used
-- each first and when that proof expires.
CREATE TABLE nonces (
    nonce      bytea  PRIMARY KEY,
    digest     bytea  NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

-- Pending e-mail verifications by the SHA-256 of their token.
CREATE TABLE email_tokens (
    token_digest bytea  PRIMARY KEY,
    recipient    text   NOT NULL,
    expires_at   bigint NOT NULL
);

CREATE TABLE mandates (
    id             bytea PRIMARY KEY,
    holder         text  NOT NULL,
    representative text  NOT NULL,
    mandate        bytea NOT NULL
);
CREATE INDEX mandates_by_holder ON mandates (holder);
CREATE INDEX mandates_by_representative ON mandates (representative);

-- What the gateway answered to each message id (idempotency).
CREATE TABLE submissions (
    message_id bytea PRIMARY KEY,
    record     bytea NOT NULL
);

-- Digital letters the monitor follows, until opened or on paper.
CREATE TABLE tracking (
    message_id bytea PRIMARY KEY,
    recipient  text  NOT NULL,
    letter     bytea NOT NULL
);
CREATE INDEX tracking_by_recipient ON tracking (recipient);

-- The signed letter of each followed letter, for a paper copy (apart from
-- tracking, whose small rows change at every step).
CREATE TABLE paper_copies (
    message_id    bytea PRIMARY KEY,
    signed_letter bytea NOT NULL
);

CREATE TABLE paper_queue (
    id   bytea PRIMARY KEY,
    item bytea NOT NULL
);

-- Evidence the gateway signed or received, kept for good.
CREATE TABLE evidence (
    evidence_id bytea PRIMARY KEY,
    message_id  bytea,
    evidence    bytea NOT NULL
);
CREATE INDEX evidence_by_message ON evidence (message_id);

-- Envelopes the gateway sealed, waiting for their first hop.
CREATE TABLE outbox (
    envelope_id bytea  PRIMARY KEY,
    message_id  bytea  NOT NULL,
    next_hop    text   NOT NULL,
    envelope    bytea  NOT NULL,
    previous    bytea,
    evidence_id bytea,
    queued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL
);
