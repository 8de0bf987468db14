-- TimescaleDB's continuous aggregates are hypertables partitioned and indexed by bucket already:
-- nothing to add (the plain variant adds the bucket indexes the dashboard needs).
SELECT 1;
