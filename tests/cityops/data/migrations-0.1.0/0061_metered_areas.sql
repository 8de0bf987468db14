-- Metered areas for the water balance (alerts/balance.py): an area's supply is the signed sum
-- of its inlet meters' flows. Written by whoever knows the network (an operator, the GIS
-- import, the simulators for their scenarios); read by the alert engine every 30 s.
CREATE TABLE metered_areas (
    area_id    text PRIMARY KEY CHECK (area_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name       text NOT NULL,
    utility    text NOT NULL DEFAULT 'water' CHECK (utility = 'water'),
    params     jsonb NOT NULL DEFAULT '{}',  -- overrides of alerts.balance.AreaSpec's defaults
    enabled    boolean NOT NULL DEFAULT true,
    set_by     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE metered_area_meters (
    area_id   text NOT NULL REFERENCES metered_areas ON DELETE CASCADE,
    sensor_id text NOT NULL REFERENCES sensors ON DELETE CASCADE,
    sign      smallint NOT NULL CHECK (sign IN (-1, 1)),  -- +1: positive flow enters the area
    PRIMARY KEY (area_id, sensor_id)
);
