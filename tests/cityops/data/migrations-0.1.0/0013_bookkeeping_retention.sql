-- Retention of the ingestion bookkeeping (ingestion/store.py drop_old_bookkeeping): the hourly
-- duplicate counts are deleted by their hour, which needs an index of its own.
CREATE INDEX ingest_duplicates_1h_bucket_idx ON ingest_duplicates_1h (bucket);
