-- A single-column id for grid-cell pieces (a border cell is split between districts), so that
-- OGC API items and planner answers have unique ids: "<h3>:<adcode>".
ALTER TABLE grid_cells
    ADD COLUMN cell_id text GENERATED ALWAYS AS (h3 || ':' || district_adcode::text) STORED;
CREATE UNIQUE INDEX grid_cells_cell_id_idx ON grid_cells (cell_id);
