"""The data dictionary (issue 17 item 6): every layer's fields and every measured quantity,
named in Chinese and English, with unit, type, allowed values, range, data class and source.

One definition of each thing: the names below are the only place layers, fields and coded values
are named (the pages' labels come from here, ``dashboards/catalogues/dictionary.py``); allowed
values and ranges are read from the database's CHECK constraints (``gis.dictionary_db``, the
module's reads; this one is pure), which enforce them on every write, so the dictionary cannot say one thing while the database keeps another; types, required
fields and descriptions come from the layer catalogue (``gis/layers.py``), quantities and units
from ``sensors/quantities.py``. ``check_frame`` checks a layer file against the same rules
before anything is written, and says everything it rejects (``gis.dictionary_db.enforce``, on
every layer write).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gis.layers import LAYERS, STORE_SRID, Layer
from gis.multiscale import ZOOM_BANDS
from sensors.catalogue import SENSOR_TYPES
from sensors.quantities import QUANTITIES, QUANTITY_NAMES

LANGS = ("zh", "en")

# "layer.<name>", "field.<column>" and "value.<code>" in each language; a field's unit, where it
# has one, ends its name in brackets: 管径（mm）, Diameter (mm)
NAMES: dict[str, dict[str, str]] = {
    "zh": {
        "layer.districts": "行政区",
        "layer.grid_cells": "网格单元",
        "layer.water_nodes": "供水节点（阀门、消火栓等）",
        "layer.water_pipes": "供水管线",
        "layer.gas_nodes": "燃气节点（阀门、调压站等）",
        "layer.gas_pipes": "燃气管线",
        "layer.power_nodes": "电力节点（变电站、开关等）",
        "layer.power_lines": "电力线路",
        "layer.power_feeders": "配电馈线",
        "layer.facilities": "重要设施",
        "layer.sensors": "传感器",
        "field.adcode": "行政区划代码",
        "field.name_zh": "中文名称",
        "field.name_en": "英文名称",
        "field.cell_id": "网格编号",
        "field.h3": "H3 编码",
        "field.resolution": "网格级别",
        "field.district_adcode": "所在区县",
        "field.population": "人口（人）",
        "field.population_demo": "人口为演示估算",
        "field.area_m2": "面积（m²）",
        "field.node_id": "节点编号",
        "field.kind": "类型",
        "field.elevation_m": "高程（m）",
        "field.base_demand_lps": "基本需水量（L/s）",
        "field.customers": "用户数（户）",
        "field.status": "状态",
        "field.install_year": "建设年份",
        "field.pipe_id": "管段编号",
        "field.from_node": "起点节点",
        "field.to_node": "终点节点",
        "field.link_kind": "管段类型",
        "field.material": "材质",
        "field.diameter_mm": "管径（mm）",
        "field.length_m": "长度（m）",
        "field.pressure_class": "压力等级",
        "field.roughness": "粗糙系数",
        "field.voltage_kv": "电压（kV）",
        "field.feeder_id": "馈线编号",
        "field.normally_open": "常开",
        "field.name": "名称",
        "field.line_id": "线路编号",
        "field.construction": "敷设方式",
        "field.conductor": "导线型号",
        "field.substation_id": "变电站编号",
        "field.line_count": "线路数",
        "field.facility_id": "设施编号",
        "field.capacity": "容量（床位、学生或人）",
        "field.demo": "演示数据",
        "field.sensor_id": "传感器编号",
        "field.utility": "行业",
        "field.sensor_type": "传感器类型",
        "field.asset_id": "所在设施编号",
        "field.distance_m": "距离（m）",
        "field.alert_count": "告警次数",
        "value.cast_iron": "灰口铸铁",
        "value.ductile_iron": "球墨铸铁",
        "value.steel": "钢",
        "value.prestressed_concrete": "预应力混凝土",
        "value.pe": "聚乙烯（PE）",
        "value.pipe": "管道",
        "value.pump": "水泵",
        "value.valve": "阀门",
        "value.junction": "连接节点",
        "value.hydrant": "消火栓",
        "value.tank": "水池",
        "value.reservoir": "水源",
        "value.regulator": "调压站",
        "value.source": "气源",
        "value.substation": "变电站",
        "value.switch": "开关",
        "value.transformer": "配电变压器",
        "value.hospital": "医院",
        "value.school": "学校",
        "value.fire_station": "消防站",
        "value.shelter": "应急避难场所",
        "value.open": "开启",
        "value.closed": "关闭",
        "value.in_service": "运行",
        "value.out_of_service": "停运",
        "value.cable": "电缆",
        "value.overhead": "架空",
        "value.low": "低压",
        "value.medium_b": "中压B",
        "value.medium_a": "中压A",
        "value.sub_high_b": "次高压B",
        "value.true": "是",
        "value.false": "否",
    },
    "en": {
        "layer.districts": "Districts",
        "layer.grid_cells": "Grid cells",
        "layer.water_nodes": "Water nodes (valves, hydrants ...)",
        "layer.water_pipes": "Water pipes",
        "layer.gas_nodes": "Gas nodes (valves, regulators ...)",
        "layer.gas_pipes": "Gas pipes",
        "layer.power_nodes": "Power nodes (substations, switches ...)",
        "layer.power_lines": "Power lines",
        "layer.power_feeders": "Feeders",
        "layer.facilities": "Critical facilities",
        "layer.sensors": "Sensors",
        "field.adcode": "Division code",
        "field.name_zh": "Chinese name",
        "field.name_en": "English name",
        "field.cell_id": "Cell id",
        "field.h3": "H3 index",
        "field.resolution": "Resolution",
        "field.district_adcode": "District",
        "field.population": "Population (persons)",
        "field.population_demo": "Population is a demo estimate",
        "field.area_m2": "Area (m²)",
        "field.node_id": "Node id",
        "field.kind": "Kind",
        "field.elevation_m": "Elevation (m)",
        "field.base_demand_lps": "Base demand (L/s)",
        "field.customers": "Customers",
        "field.status": "Status",
        "field.install_year": "Installed",
        "field.pipe_id": "Pipe id",
        "field.from_node": "From node",
        "field.to_node": "To node",
        "field.link_kind": "Link kind",
        "field.material": "Material",
        "field.diameter_mm": "Diameter (mm)",
        "field.length_m": "Length (m)",
        "field.pressure_class": "Pressure class",
        "field.roughness": "Roughness",
        "field.voltage_kv": "Voltage (kV)",
        "field.feeder_id": "Feeder id",
        "field.normally_open": "Normally open",
        "field.name": "Name",
        "field.line_id": "Line id",
        "field.construction": "Construction",
        "field.conductor": "Conductor",
        "field.substation_id": "Substation id",
        "field.line_count": "Lines",
        "field.facility_id": "Facility id",
        "field.capacity": "Capacity (beds, pupils or persons)",
        "field.demo": "Demo data",
        "field.sensor_id": "Sensor id",
        "field.utility": "Utility",
        "field.sensor_type": "Sensor type",
        "field.asset_id": "On asset",
        "field.distance_m": "Distance (m)",
        "field.alert_count": "Alerts",
        "value.cast_iron": "cast iron",
        "value.ductile_iron": "ductile iron",
        "value.steel": "steel",
        "value.prestressed_concrete": "prestressed concrete",
        "value.pe": "polyethylene (PE)",
        "value.pipe": "pipe",
        "value.pump": "pump",
        "value.valve": "valve",
        "value.junction": "junction",
        "value.hydrant": "hydrant",
        "value.tank": "tank",
        "value.reservoir": "reservoir",
        "value.regulator": "regulator",
        "value.source": "gas source",
        "value.substation": "substation",
        "value.switch": "switch",
        "value.transformer": "transformer",
        "value.hospital": "hospital",
        "value.school": "school",
        "value.fire_station": "fire station",
        "value.shelter": "shelter",
        "value.open": "open",
        "value.closed": "closed",
        "value.in_service": "in service",
        "value.out_of_service": "out of service",
        "value.cable": "cable",
        "value.overhead": "overhead",
        "value.low": "low",
        "value.medium_b": "medium B",
        "value.medium_a": "medium A",
        "value.sub_high_b": "sub-high B",
        "value.true": "yes",
        "value.false": "no",
    },
}

_UNIT = re.compile(r"\s*[（(]([^()（）]+)[)）]\s*$")


def unit_of(column: str, lang: str = "en") -> str:
    """The unit in a field's name (``Diameter (mm)``: ``mm``; ``人口（人）``: ``人``); empty
    without one. The English one is the dictionary's unit."""
    m = _UNIT.search(NAMES[lang].get(f"field.{column}", ""))
    return m.group(1) if m else ""


@dataclass(frozen=True, slots=True)
class Rule:
    """What a column's CHECK constraints allow: coded values, or a range."""

    allowed: tuple[str, ...] = ()
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    text: str = ""  # the constraint as the database shows it

    def violated_by(self, value: Any) -> bool:
        if value is None:
            return False
        if self.allowed:
            return str(value) not in self.allowed
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        ):
            return True
        return self.high is not None and (
            value > self.high or (value == self.high and not self.high_inclusive)
        )

    def describe(self) -> str:
        """The rule in a reader's words: ``one of a, b`` or ``>= 1850 and <= 2100``."""
        if self.allowed:
            return "one of " + ", ".join(self.allowed)
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.low_inclusive else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.high_inclusive else '<'} {self.high:g}")
        return " and ".join(parts) or self.text


_ANY = re.compile(r"^\(*(\w+) = ANY \(+ARRAY\[(.*)\]\)*$")
_CMP = re.compile(r"^\(*(\w+) (>=|>|<=|<) \(*(-?[0-9.]+)\)*(?:::[a-z ]+)?\)*$")


def parse_check(definition: str) -> tuple[str, Rule] | None:
    """(column, rule) of a one-column CHECK constraint as ``pg_get_constraintdef`` prints it
    (``CHECK ((kind = ANY (ARRAY['a'::text, 'b'::text])))``, ``CHECK (((x >= 0) AND (x <= 15)))``);
    None for any other shape (several columns, functions)."""
    body = definition.strip()
    if body.upper().startswith("CHECK "):
        body = body[6:].strip()
    column = None
    rule = Rule(text=definition)
    for part in body.strip("()").split(" AND "):
        part = part.strip()
        if m := _ANY.match(part):
            col, listed = m.group(1), re.findall(r"'((?:[^']|'')*)'", m.group(2))
            rule = Rule(tuple(v.replace("''", "'") for v in listed), text=definition)
        elif m := _CMP.match(part):
            col, op, number = m.group(1), m.group(2), float(m.group(3))
            if op.startswith(">"):
                rule = Rule(
                    low=number,
                    low_inclusive=op == ">=",
                    high=rule.high,
                    high_inclusive=rule.high_inclusive,
                    text=definition,
                )
            else:
                rule = Rule(
                    low=rule.low,
                    low_inclusive=rule.low_inclusive,
                    high=number,
                    high_inclusive=op == "<=",
                    text=definition,
                )
        else:
            return None
        if column not in (None, col):
            return None
        column = col
    return (column, rule) if column else None


def check_frame(
    layer: Layer, rows: Iterable[dict[str, Any]], rules: dict[str, Rule], *, shown: int = 5
) -> list[str]:
    """Every rule the rows break, one line per field and rule: how many rows, the first ids and
    values, and the rule (an empty list: nothing to reject)."""
    broken: dict[str, list[tuple[Any, Any]]] = {}
    for row in rows:
        for column, rule in rules.items():
            if column in row and rule.violated_by(row[column]):
                broken.setdefault(column, []).append((row.get(layer.id_column), row[column]))
    out = []
    for column, hits in broken.items():
        first = ", ".join(f"{i} ({v!r})" for i, v in hits[:shown])
        more = f" and {len(hits) - shown} more" if len(hits) > shown else ""
        out.append(
            f"{layer.name}.{column} must be {rules[column].describe()}: "
            f"{len(hits)} rows break it, {first}{more}"
        )
    return out


class RuleError(ValueError):
    """Rows that break the data dictionary's rules; the message names every broken rule."""


def _names(key: str) -> dict[str, str]:
    return {lang: NAMES[lang].get(key, "") for lang in LANGS}


def field_entry(layer: Layer, column: str, rule: Rule | None) -> dict[str, Any]:
    col = layer.column(column)
    entry: dict[str, Any] = {
        "name": column,
        "label": _names(f"field.{column}"),
        "unit": unit_of(column),
        "unit_zh": unit_of(column, "zh"),
        "type": col.type,
        "required": col.required,
        "default": col.default,
        "description": col.description,
        "allowed": [],
        "min": None,
        "max": None,
    }
    if rule and rule.allowed:
        entry["allowed"] = [{"code": v, **_names(f"value.{v}")} for v in rule.allowed]
    elif rule:
        entry["min"], entry["max"] = rule.low, rule.high
        entry["min_inclusive"], entry["max_inclusive"] = rule.low_inclusive, rule.high_inclusive
    return entry


def layer_entry(layer: Layer, rules: dict[str, Rule], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": layer.name,
        "label": _names(f"layer.{layer.name}"),
        "table": layer.table,
        "id_field": layer.id_column,
        "geometry": layer.geometry_type,
        "crs": f"EPSG:{STORE_SRID}",
        "classification": meta.get("classification", "restricted"),
        "source": meta.get("source") or "",
        "licence": meta.get("licence") or "",
        "fields": [field_entry(layer, c, rules.get(c)) for c in layer.column_names],
    }


def quantity_entries() -> list[dict[str, Any]]:
    return [
        {
            "name": q.name,
            "label": {lang: QUANTITY_NAMES[lang].get(q.name, "") for lang in LANGS},
            "unit": q.unit,
            "accepted_units": [q.unit, *(c[0] for c in q.conversions)],
            "physical_min": q.physical_min,
            "physical_max": q.physical_max,
        }
        for q in QUANTITIES.values()
    ]


def sensor_type_entries() -> list[dict[str, Any]]:
    return [
        {
            "name": t.type_id,
            "label": {"zh": t.name_zh, "en": t.name_en},
            "utility": str(t.utility),
            "expected_interval_s": t.expected_interval_s,
            "quantities": list(t.quantities),
        }
        for t in SENSOR_TYPES.values()
    ]


GROUND_M_PER_PX_Z0 = 134_650.0  # web map ground resolution at zoom 0, Chengdu's latitude
M_PER_SCREEN_PX = 0.00028  # the OGC standard rendering pixel (0.28 mm)


def scale_entries() -> list[dict[str, Any]]:
    """The zoom bands maps draw at (gis/multiscale.py) with their map scales at Chengdu: what
    is simplified by how much, which links and node kinds are drawn."""

    def scale(zoom: int) -> int:
        return int(round(GROUND_M_PER_PX_Z0 / 2**zoom / M_PER_SCREEN_PX, -2))

    return [
        {
            "band": b.name,
            "zoom": [b.min_zoom, b.max_zoom],
            "scale": [f"1:{scale(b.min_zoom):,}", f"1:{scale(min(b.max_zoom, 20)):,}"],
            "simplified_m": b.tolerance_m,
            "links_from_diameter_mm": b.min_diameter_mm,
            "node_kinds": list(b.node_kinds) if b.node_kinds is not None else "all",
            "districts": "boundaries simplified by the band's tolerance",
        }
        for b in ZOOM_BANDS
    ]


def build_dictionary(
    rules: dict[str, dict[str, Rule]], meta: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The whole dictionary as one document (served as JSON and, flattened, as CSV), from each
    table's rules and each layer's ``gis_layers`` row (``gis.dictionary_db`` reads both)."""
    return {
        "name": "cityops data dictionary",
        "crs": {"stored": f"EPSG:{STORE_SRID}", "measured": "EPSG:4544"},
        "layers": [
            layer_entry(layer, rules.get(layer.table, {}), meta.get(layer.name, {}))
            for layer in LAYERS.values()
        ],
        "quantities": quantity_entries(),
        "sensor_types": sensor_type_entries(),
        "scales": scale_entries(),
    }


CSV_COLUMNS = (
    "kind",
    "layer",
    "name",
    "name_zh",
    "name_en",
    "unit",
    "type",
    "required",
    "allowed",
    "min",
    "max",
    "classification",
    "source",
    "description",
)


def _row(kind: str, entry: dict[str, Any], **rest: Any) -> dict[str, Any]:
    """One CSV row: the entry's kind and names, then ``rest``; columns it lacks stay empty."""
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(kind=kind, name=entry["name"], name_zh=entry["label"]["zh"])
    row.update(name_en=entry["label"]["en"], **rest)
    return row


def dictionary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The dictionary flattened, one row per field, quantity and sensor type (``CSV_COLUMNS``)."""
    rows = [
        _row(
            "field",
            f,
            layer=layer["name"],
            unit=f["unit"],
            type=f["type"],
            required=f["required"],
            allowed="|".join(a["code"] for a in f["allowed"]),
            min=f["min"],
            max=f["max"],
            classification=layer["classification"],
            source=layer["source"],
            description=f["description"],
        )
        for layer in doc["layers"]
        for f in layer["fields"]
    ]
    rows += [
        _row(
            "quantity",
            q,
            unit=q["unit"],
            type="float",
            allowed="|".join(q["accepted_units"]),
            min=q["physical_min"],
            max=q["physical_max"],
            source="sensors",
            description="accepted units in allowed; min and max: what no working sensor reports",
        )
        for q in doc["quantities"]
    ]
    rows += [
        _row(
            "sensor_type",
            t,
            type=t["utility"],
            allowed="|".join(t["quantities"]),
            source="sensors",
            description=f"expected every {t['expected_interval_s']:g} s",
        )
        for t in doc["sensor_types"]
    ]
    return rows


def dictionary_csv(doc: dict[str, Any]) -> str:
    """The dictionary flattened to CSV (written with a BOM, Excel reads it as UTF-8)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(dictionary_rows(doc))
    return buf.getvalue()
