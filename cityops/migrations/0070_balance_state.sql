-- The learnt state of each metered area's water balance (alerts/balance.py): the per-day,
-- per-bin sums its profile is built from, the night history and the alert flags, as one JSON
-- document per area (alerts/stores/balance_state.py). Reloaded at start, so a restart neither
-- reopens a learning period nor judges against an empty profile. Its size is bounded by the
-- area's history_days (7 by default): older days are dropped from the document itself.
CREATE TABLE alert_balance_state (
    area_id    text PRIMARY KEY,
    state      jsonb NOT NULL,
    stream_ts  timestamptz,  -- the newest supply point the state has seen
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each key's learnt arrival rhythm (the engine's smoothed interval between arrivals, on the
-- stream's clock), so that a restarted engine judges silence by the sensor's own rhythm
-- rather than its type's declared interval until it has shown it again.
ALTER TABLE alert_detector_state ADD COLUMN interval_s double precision;
