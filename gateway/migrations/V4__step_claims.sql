-- Steps only one gateway instance may take at a time: the next steps of a
-- followed letter (notification, reminder, paper copy) and the printing of
-- a paper item. A claim names its instance and lasts until it is released
-- or `until` (seconds since 1970, on the database server's clock) passes,
-- so that the steps of an instance that died are taken by another.
CREATE TABLE step_claims (
    step     bytea  PRIMARY KEY,
    instance text   NOT NULL,
    until    bigint NOT NULL
);
