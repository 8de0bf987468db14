"""The layer catalogue: which tables hold which layer, their columns and geometry (pure).

Every layer is stored in EPSG:4326 (``geom``) with a generated EPSG:4544 copy (``geom_m``) for
measuring in metres. The schema is in cityops/migrations/0050_gis_layers.sql; the documentation
(source, licence, CRS per layer) in docs/gis.md and in the ``gis_layers`` table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

STORE_SRID = 4326  # storage and serving CRS (WGS 84; CGCS2000 EPSG:4490 differs by < 1 m)
METRIC_SRID = 4544  # CGCS2000 / 3-degree Gauss-Kruger CM 105E: metres around Chengdu
CGCS2000_SRID = 4490

# Chengdu's extent with a margin [degrees]: data outside it means a wrong CRS, not a new city
CHENGDU_BOUNDS = (102.8, 30.0, 105.0, 31.5)

ColumnType = Literal["text", "int", "float", "bool"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    description: str = ""
    default: Any = None  # what an empty value becomes (the database default)


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    table: str
    id_column: str
    geometry_type: str  # Point, LineString, MultiPolygon, MultiLineString
    columns: tuple[Column, ...]
    network: str | None = None  # water, gas, power
    role: Literal["nodes", "links", "other"] = "other"
    loadable: bool = True  # through `gis load`

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"layer {self.name} has no column {name!r}")


def _c(
    name: str, type_: ColumnType, required: bool = False, description: str = "", default: Any = None
) -> Column:
    return Column(name, type_, required, description, default)


LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            "districts",
            "districts",
            "adcode",
            "MultiPolygon",
            (
                _c("adcode", "int", True, "administrative division code"),
                _c("name_zh", "text", True),
                _c("name_en", "text", True),
            ),
        ),
        Layer(
            "grid_cells",
            "grid_cells",
            "h3",
            "MultiPolygon",
            (
                _c("h3", "text", True, "H3 cell index"),
                _c("resolution", "int", True),
                _c("district_adcode", "int", True),
                _c(
                    "population",
                    "int",
                    False,
                    "persons (demo estimate unless population_demo=false)",
                ),
                _c("population_demo", "bool", default=True),
                _c("area_m2", "float", False, "[m²] in EPSG:4544"),
            ),
            loadable=False,
        ),
        Layer(
            "water_nodes",
            "water_nodes",
            "node_id",
            "Point",
            (
                _c("node_id", "text", True),
                _c("kind", "text", True, "junction, valve, hydrant, tank, reservoir"),
                _c("elevation_m", "float", False, "[m]"),
                _c("base_demand_lps", "float", False, "[L/s]"),
                _c("customers", "int", False, "service connections fed at this node", 0),
                _c("status", "text", False, "open or closed (valves: normal position)", "open"),
                _c("district_adcode", "int"),
                _c("install_year", "int"),
            ),
            network="water",
            role="nodes",
        ),
        Layer(
            "water_pipes",
            "water_pipes",
            "pipe_id",
            "LineString",
            (
                _c("pipe_id", "text", True),
                _c("from_node", "text", True),
                _c("to_node", "text", True),
                _c("link_kind", "text", False, "pipe, pump or valve", "pipe"),
                _c("material", "text"),
                _c("diameter_mm", "float", False, "[mm]"),
                _c("length_m", "float", False, "[m]; computed in EPSG:4544 when missing"),
                _c("install_year", "int"),
                _c("pressure_class", "text", False, "e.g. PN10"),
                _c("roughness", "float"),
                _c("status", "text", False, "open or closed", "open"),
                _c("district_adcode", "int"),
            ),
            network="water",
            role="links",
        ),
        Layer(
            "gas_nodes",
            "gas_nodes",
            "node_id",
            "Point",
            (
                _c("node_id", "text", True),
                _c("kind", "text", True, "junction, valve, regulator, source"),
                _c("pressure_class", "text"),
                _c("customers", "int", default=0),
                _c("status", "text", default="open"),
                _c("district_adcode", "int"),
            ),
            network="gas",
            role="nodes",
        ),
        Layer(
            "gas_pipes",
            "gas_pipes",
            "pipe_id",
            "LineString",
            (
                _c("pipe_id", "text", True),
                _c("from_node", "text", True),
                _c("to_node", "text", True),
                _c("material", "text"),
                _c("diameter_mm", "float", False, "[mm]"),
                _c("length_m", "float", False, "[m]"),
                _c("install_year", "int"),
                _c("pressure_class", "text", False, "low, medium_b, medium_a, sub_high_b ..."),
                _c("status", "text", default="open"),
                _c("district_adcode", "int"),
            ),
            network="gas",
            role="links",
        ),
        Layer(
            "power_nodes",
            "power_nodes",
            "node_id",
            "Point",
            (
                _c("node_id", "text", True),
                _c("kind", "text", True, "substation, switch, junction, transformer"),
                _c("voltage_kv", "float", False, "[kV]"),
                _c("feeder_id", "text"),
                _c("normally_open", "bool", default=False),
                _c("customers", "int", default=0),
                _c("name", "text"),
                _c("district_adcode", "int"),
            ),
            network="power",
            role="nodes",
        ),
        Layer(
            "power_lines",
            "power_lines",
            "line_id",
            "LineString",
            (
                _c("line_id", "text", True),
                _c("from_node", "text", True),
                _c("to_node", "text", True),
                _c("voltage_kv", "float", True, "[kV]"),
                _c("feeder_id", "text"),
                _c("construction", "text", False, "overhead or cable"),
                _c("conductor", "text"),
                _c("length_m", "float", False, "[m]"),
                _c("install_year", "int"),
                _c("status", "text", False, "in_service or out_of_service", "in_service"),
                _c("district_adcode", "int"),
            ),
            network="power",
            role="links",
        ),
        Layer(
            "power_feeders",
            "power_feeders",
            "feeder_id",
            "MultiLineString",
            (
                _c("feeder_id", "text", True),
                _c("substation_id", "text"),
                _c("voltage_kv", "float"),
                _c("line_count", "int"),
                _c("length_m", "float"),
                _c("customers", "int", default=0),
            ),
            network="power",
            loadable=False,
        ),
        Layer(
            "facilities",
            "facilities",
            "facility_id",
            "Point",
            (
                _c("facility_id", "text", True),
                _c("kind", "text", True, "hospital, school, fire_station, shelter"),
                _c("name_zh", "text", True),
                _c("name_en", "text", default=""),
                _c("capacity", "int", False, "beds, pupils or persons sheltered"),
                _c("district_adcode", "int"),
                _c("demo", "bool", default=False),
            ),
        ),
        Layer(
            "sensors",
            "sensors",
            "sensor_id",
            "Point",
            (
                _c("sensor_id", "text", True),
                _c("utility", "text", True),
                _c("sensor_type", "text", True),
                _c("name", "text", True),
                _c("district_adcode", "int"),
                _c("asset_id", "text"),
                _c("status", "text"),
            ),
            loadable=False,  # `cityops sensors import` owns the catalogue rules
        ),
    )
}

NETWORKS: dict[str, tuple[str, str]] = {
    # network -> (nodes layer, links layer)
    "water": ("water_nodes", "water_pipes"),
    "gas": ("gas_nodes", "gas_pipes"),
    "power": ("power_nodes", "power_lines"),
}


def get_layer(name: str) -> Layer:
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown layer {name!r}; known: {', '.join(sorted(LAYERS))}") from None
