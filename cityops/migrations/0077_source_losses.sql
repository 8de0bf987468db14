-- Source losses (alerts/source_loss.py, decision 0076): many sensors silent together is one
-- loss of data (the whole stream, a utility's stream, a district's sensors), not a silent alert
-- per sensor. The engine opens, grows and closes them; the pages show their sensors as unknown.
CREATE TABLE source_losses (
    loss_id      bigserial PRIMARY KEY,
    worker       text NOT NULL DEFAULT '0/1',  -- the engine's partition that saw it (k/n)
    scope        text NOT NULL CHECK (scope IN ('stream', 'utility', 'district')),
    scope_value  text,                          -- the utility or the district's adcode
    sensors      text[] NOT NULL,
    group_size   integer NOT NULL,             -- sensors of the scope when it opened
    since        timestamptz NOT NULL,         -- nothing came from its sensors after this
    noticed_at   timestamptz NOT NULL,         -- the stream's clock when the rule saw it
    back_at      timestamptz,                  -- a sensor first reported again
    ended_at     timestamptz,                  -- closed by itself after settling
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    explanation_zh text NOT NULL,
    explanation_en text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (worker, scope, since, scope_value)
);
CREATE UNIQUE INDEX source_losses_one_open_idx
    ON source_losses (worker, scope, coalesce(scope_value, '')) WHERE state = 'open';

-- the rule, one row (decision 0076); read by the engine at start and every 30 s
CREATE TABLE source_loss_rule (
    id             int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    min_sensors    integer NOT NULL DEFAULT 5 CHECK (min_sensors >= 1),
    min_share      double precision NOT NULL DEFAULT 0.5 CHECK (min_share BETWEEN 0 AND 1),
    overdue_factor double precision NOT NULL DEFAULT 2.0 CHECK (overdue_factor > 0),
    window_s       double precision NOT NULL DEFAULT 60 CHECK (window_s >= 0),
    settle_s       double precision NOT NULL DEFAULT 60 CHECK (settle_s >= 0),
    enabled        boolean NOT NULL DEFAULT true
);
INSERT INTO source_loss_rule DEFAULT VALUES;
