-- The operator report without reading the registry or the paper queue
-- (gateway/src/report.rs): counters that each write of a person or a paper
-- item changes in its own transaction, by the names in the entry's `tally`.
CREATE TABLE report_counts (
    name text   PRIMARY KEY,
    n    bigint NOT NULL
);

-- What each entry counts for (NULL: a row from before this migration, not
-- yet counted; counted at the next start), and for an active inbox its
-- last session in seconds (0: never), NULL for any other entry.
ALTER TABLE people ADD COLUMN tally text[];
ALTER TABLE people ADD COLUMN away_since bigint;
CREATE INDEX people_by_away ON people (away_since) WHERE away_since IS NOT NULL;

-- Paper items waiting for the print spool (neither spooled nor failed).
ALTER TABLE paper_queue ADD COLUMN tally text[];
ALTER TABLE paper_queue ADD COLUMN waiting boolean NOT NULL DEFAULT false;
CREATE INDEX paper_waiting ON paper_queue (id) WHERE waiting;

-- Rows from before, until they are counted (empty once they are).
CREATE INDEX people_uncounted ON people (recipient) WHERE tally IS NULL;
CREATE INDEX paper_uncounted ON paper_queue (id) WHERE tally IS NULL;
