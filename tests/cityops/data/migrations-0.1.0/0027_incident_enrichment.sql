-- When an incident's network context (likely location, valves, affected customers, facilities,
-- population; alerts/enrich.py) was last computed: recomputed when the incident grows.
ALTER TABLE incidents ADD COLUMN enriched_at timestamptz;
CREATE INDEX incidents_to_enrich_idx ON incidents (updated_at) WHERE state = 'open';
