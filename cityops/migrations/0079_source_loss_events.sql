-- Source losses reach people (decision 0076, amended): opening and closing a loss is an event of
-- the outbox like an alert's (published on city/alerts/source_loss/<loss_id>, routed to the
-- notification routes), so an event has either an alert or a source loss.
ALTER TABLE alert_events
    ALTER COLUMN alert_id DROP NOT NULL,
    ADD COLUMN source_loss_id bigint REFERENCES source_losses ON DELETE CASCADE,
    ADD CONSTRAINT alert_events_one_subject CHECK ((alert_id IS NULL) <> (source_loss_id IS NULL));
-- once each: a loss is announced lost once and back once, whatever restarts happen in between
CREATE UNIQUE INDEX alert_events_source_loss_idx ON alert_events (source_loss_id, event)
    WHERE source_loss_id IS NOT NULL;
