-- A source loss is taken on by a person (issue 16 follow-up): who acknowledged it and when, so
-- that the console, the wall and the overview say somebody is on it (calling the carrier, the
-- gateway's owner) while the loss stays open until the data comes back by itself.
ALTER TABLE source_losses
    ADD COLUMN acknowledged_by text,
    ADD COLUMN acknowledged_at timestamptz,
    ADD CONSTRAINT source_losses_ack_whole
        CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL));
