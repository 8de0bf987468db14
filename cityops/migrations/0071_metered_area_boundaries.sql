-- Metered areas as data (issue 15 item 2, decision 0055): each area's polygon, for the planner's
-- map, and where the area came from, so that a re-import (or a new derivation) replaces the areas
-- of its own origin and leaves those declared by the simulators or the API alone.
ALTER TABLE metered_areas
    ADD COLUMN boundary geometry(MultiPolygon, 4326),
    ADD COLUMN origin text NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'import', 'derived'));
CREATE INDEX metered_areas_boundary_idx ON metered_areas USING gist (boundary);
