-- The monitor looks only at followed letters whose next step is due:
-- `due_at` (seconds since 1970) is when it is, 0 for a letter to look at in
-- the next cycle (evidence about it arrived, its person's entry changed,
-- or it was followed before this column existed), and the largest bigint
-- for one with nothing due until something changes.
ALTER TABLE tracking ADD COLUMN due_at bigint NOT NULL DEFAULT 0;
CREATE INDEX tracking_by_due ON tracking (due_at);
