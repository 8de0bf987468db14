-- Simulator runs and their ground truth (owned by simulators/store.py): what happened, where,
-- when and to which sensors, so that detection and localisation can be scored.
CREATE TABLE sim_runs (
    run_id      text PRIMARY KEY,
    scenario    text NOT NULL,
    source      text NOT NULL DEFAULT '',
    seed        bigint NOT NULL,
    sim_start   timestamptz NOT NULL,
    sim_end     timestamptz NOT NULL,
    step_s      double precision NOT NULL CHECK (step_s > 0),
    sensors     integer NOT NULL,
    messages    bigint,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE sim_ground_truth (
    run_id           text NOT NULL REFERENCES sim_runs ON DELETE CASCADE,
    event_id         integer NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('incident', 'fault')),
    type             text NOT NULL,
    network          text CHECK (network IN ('water', 'power', 'gas')),
    element          text,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz,  -- NULL: still going when the run ended
    geom             geometry(Point, 4326),
    affected_sensors text[] NOT NULL DEFAULT '{}',
    params           jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, event_id),
    CHECK (ends_at IS NULL OR ends_at >= starts_at)
);
CREATE INDEX sim_ground_truth_time_idx ON sim_ground_truth (starts_at, ends_at);
CREATE INDEX sim_ground_truth_geom_idx ON sim_ground_truth USING gist (geom);
