"""Metered areas (DMAs) as data: read from a file or derived from the water network (pure).

An area is a part of the network whose every open way in or out passes a flow meter: its supply
is the signed sum of those meters (alerts/balance.py). Two ways to get them:

- ``parse_area_features``: a utility's own file, one polygon per area (``area_id``, ``name``)
  with its meters given as properties (``inlets``/``outlets``: sensor ids) or as points of a
  second layer (``area_id``, ``sensor_id``, ``direction`` = in | out).
- ``derive_areas``: cut the network at every metered link and every closed link or valve; each
  connected part with a meter on its boundary is an area. A meter's sign says which way its
  positive flow (from_node to to_node, EPANET's convention) crosses the boundary; a meter on a
  link out of a reservoir or tank is an inlet of the part it feeds. Sources themselves belong to
  no area. A part that an unmetered open link joins to a source is not balanced and is left out.

What comes out (``AreaDraft``) is written by the alerts part (``alerts.api.write_metered_areas``),
which checks the sensors against the catalogue in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon, mapping, shape
from shapely.ops import unary_union

from gis.network import SOURCE_KINDS, Network

AREA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DIRECTIONS = {"in": 1, "inlet": 1, "+1": 1, "1": 1, "out": -1, "outlet": -1, "-1": -1}


class AreaError(ValueError):
    """A file or a derivation that cannot give metered areas (nothing is written)."""


@dataclass(frozen=True, slots=True)
class AreaMeter:
    sensor_id: str
    sign: int  # +1: the meter's positive flow enters the area
    storage: bool = False  # on a service reservoir (tank) rather than a source


@dataclass(frozen=True, slots=True)
class AreaDraft:
    area_id: str
    name: str
    meters: tuple[AreaMeter, ...]
    members: tuple[str, ...] = ()  # other sensors inside (pressure), for incident grouping
    boundary: dict[str, Any] | None = None  # GeoJSON MultiPolygon, EPSG:4326
    pipes: tuple[str, ...] = field(default=(), compare=False)  # links inside (derived areas)

    def as_record(self) -> dict[str, Any]:
        """Plain data for ``alerts.api.write_metered_areas``."""
        return {
            "area_id": self.area_id,
            "name": self.name,
            "meters": [(m.sensor_id, m.sign, m.storage) for m in self.meters],
            "members": list(self.members),
            "boundary": self.boundary,
        }


def check_area_id(area_id: Any) -> str:
    text = str(area_id if area_id is not None else "").strip()
    if not AREA_ID.match(text):
        raise AreaError(f"bad area id {text!r}: use 1-64 of [a-z0-9_-], starting a-z or 0-9")
    return text


def _as_multipolygon(geom: Any, area_id: str) -> dict[str, Any]:
    g = shape(geom) if isinstance(geom, Mapping) else geom
    if isinstance(g, Polygon):
        g = MultiPolygon([g])
    if not isinstance(g, MultiPolygon) or g.is_empty:
        raise AreaError(f"area {area_id}: its geometry must be a polygon")
    if not g.is_valid:
        raise AreaError(f"area {area_id}: invalid polygon (self-intersecting?)")
    return dict(mapping(g))


def _ids(value: Any) -> list[str]:
    """Sensor ids from a property: a list, or text separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    if isinstance(value, Iterable):
        return [str(v).strip() for v in value if str(v).strip()]
    raise AreaError(f"sensor ids must be a list or comma-separated text, not {value!r}")


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):  # a file reader may give a flag column as 1.0 / NaN
        return value == 1
    return str(value).strip().lower() in ("1", "true", "yes", "y", "t")


def parse_area_features(
    polygons: Sequence[Mapping[str, Any]], points: Sequence[Mapping[str, Any]] = ()
) -> list[AreaDraft]:
    """Areas from GeoJSON-like features in EPSG:4326 (``{"geometry": ..., "properties": ...}``):
    ``polygons`` one per area; ``points`` the meters of a second layer. Raises ``AreaError`` on
    a bad or repeated id, a meter twice with two directions, or an area with no meter."""
    if not polygons:
        raise AreaError("no area polygons in the file")
    areas: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(polygons):
        props = dict(f.get("properties") or {})
        area_id = check_area_id(props.get("area_id", props.get("id")))
        if area_id in areas:
            raise AreaError(f"area id {area_id} appears twice in the file")
        name = str(props.get("name") or props.get("name_zh") or "").strip()
        if not name:
            raise AreaError(f"area {area_id} (feature {i + 1}) has no name")
        if f.get("geometry") is None:
            raise AreaError(f"area {area_id} has no geometry")
        meters: dict[str, int] = {}
        for key, sign in (("inlets", 1), ("outlets", -1)):
            for sid in _ids(props.get(key)):
                _add_meter(meters, area_id, sid, sign)
        areas[area_id] = {
            "name": name,
            "boundary": _as_multipolygon(f["geometry"], area_id),
            "meters": meters,
            "storage": set(_ids(props.get("storage"))),
            "members": _ids(props.get("members")),
        }
    for j, p in enumerate(points):
        props = dict(p.get("properties") or {})
        area_id = check_area_id(props.get("area_id"))
        if area_id not in areas:
            raise AreaError(f"meter point {j + 1} names area {area_id}, which has no polygon")
        sid = str(props.get("sensor_id") or "").strip()
        if not sid:
            raise AreaError(f"meter point {j + 1} of area {area_id} names no sensor_id")
        direction = str(props.get("direction") or "").strip().lower()
        if direction not in DIRECTIONS:
            raise AreaError(
                f"meter {sid} of area {area_id}: direction {direction!r} is not in or out"
            )
        _add_meter(areas[area_id]["meters"], area_id, sid, DIRECTIONS[direction])
        if _truthy(props.get("storage", False)):
            areas[area_id]["storage"].add(sid)
    out = []
    for area_id, a in areas.items():
        if not a["meters"]:
            raise AreaError(f"area {area_id} has no inlet or outlet meter")
        found = tuple(
            AreaMeter(sid, sign, sid in a["storage"]) for sid, sign in sorted(a["meters"].items())
        )
        members = tuple(sorted(set(a["members"]) - set(a["meters"])))
        out.append(AreaDraft(area_id, a["name"], found, members, a["boundary"]))
    return out


def _add_meter(meters: dict[str, int], area_id: str, sensor_id: str, sign: int) -> None:
    if meters.get(sensor_id, sign) != sign:
        raise AreaError(f"meter {sensor_id} is both an inlet and an outlet of area {area_id}")
    meters[sensor_id] = sign


@dataclass(frozen=True, slots=True)
class Skipped:
    """A part of the network that is not an area, and why."""

    nodes: int
    reason: str


def derive_areas(
    net: Network,
    flow_meters: Mapping[str, str],
    *,
    members_at: Mapping[str, str] | None = None,
    prefix: str = "dma",
    name_format: str = "计量分区 {n}",
    min_links: int = 1,
) -> tuple[list[AreaDraft], list[Skipped]]:
    """The metered areas of a water network (no polygons: ``with_boundaries`` adds them).

    ``flow_meters``: sensor id -> the link it measures (``sensors.asset_id``);
    ``members_at``: other sensor id -> the node or link it sits on (pressure sensors);
    ``prefix`` and ``name_format`` (``{n}``: the area's number, largest area first) name the
    areas; parts with fewer than ``min_links`` links inside are left out."""
    check_area_id(prefix)
    unknown = sorted(sid for sid, lid in flow_meters.items() if lid not in net.links)
    if unknown:
        raise AreaError(f"flow meters on links the network does not have: {', '.join(unknown)}")
    by_link: dict[str, list[str]] = {}
    for sid, lid in sorted(flow_meters.items()):
        by_link.setdefault(lid, []).append(sid)
    sources = {n.node_id for n in net.nodes.values() if n.kind in SOURCE_KINDS["water"]}
    cut = set(by_link) | {lid for lid, lk in net.links.items() if lk.closed}
    closed_nodes = {nid for nid, n in net.nodes.items() if n.closed}
    part_of: dict[str, int] = {}
    parts: list[list[str]] = []
    for start in sorted(net.nodes):
        if start in part_of or start in sources or start in closed_nodes:
            continue
        k = len(parts)
        part_of[start] = k
        stack, members = [start], [start]
        while stack:
            node = stack.pop()
            for _lid, _lk, other in net.open_steps(node, cut):
                if other in part_of or other in sources or other in closed_nodes:
                    continue
                part_of[other] = k
                members.append(other)
                stack.append(other)
        parts.append(members)

    inside: dict[int, list[str]] = {}
    meters: dict[int, list[AreaMeter]] = {}
    leaky: set[int] = set()
    for lid, lk in sorted(net.links.items()):
        a, b = part_of.get(lk.from_node), part_of.get(lk.to_node)
        if lid in by_link:
            if a == b:  # both ends in one part: the meter measures flow inside it
                continue
            tank = net.nodes[lk.from_node].kind == "tank" or net.nodes[lk.to_node].kind == "tank"
            for part, sign in ((a, -1), (b, 1)):
                if part is not None:
                    meters.setdefault(part, []).extend(
                        AreaMeter(sid, sign, tank) for sid in by_link[lid]
                    )
        elif not lk.closed:
            if a is not None and a == b:
                inside.setdefault(a, []).append(lid)
            elif (a is None) != (b is None):  # an open unmetered link out of the part
                outer = lk.to_node if a is not None else lk.from_node
                if outer in sources:
                    leaky.add(a if a is not None else b)  # type: ignore[arg-type]

    found: list[tuple[int, int, str]] = []
    skipped = []
    for k, nodes in enumerate(parts):
        if k not in meters:
            continue
        if k in leaky:
            skipped.append(Skipped(len(nodes), "fed from a source through an unmetered link"))
        elif len(inside.get(k, [])) < min_links:
            skipped.append(Skipped(len(nodes), f"fewer than {min_links} links inside"))
        else:
            found.append((-len(inside.get(k, [])), k, min(nodes)))
    found.sort(key=lambda t: (t[0], t[2]))
    where = dict(members_at or {})
    width = max(2, len(str(len(found))))
    out = []
    for n, (_, k, _) in enumerate(found, start=1):
        links = set(inside.get(k, []))
        in_part = set(parts[k])
        mem = sorted(
            sid
            for sid, at in where.items()
            if sid not in flow_meters and (at in in_part or at in links)
        )
        out.append(
            AreaDraft(
                f"{prefix}-{n:0{width}d}",
                name_format.format(n=n, prefix=prefix),
                tuple(sorted(meters[k], key=lambda m: m.sensor_id)),
                tuple(mem),
                None,
                tuple(sorted(links)),
            )
        )
    return out, skipped


def area_polygon(
    lines_m: Iterable[Sequence[tuple[float, float]]],
    *,
    to_lonlat: Any,
    buffer_m: float = 40.0,
) -> dict[str, Any] | None:
    """A GeoJSON MultiPolygon [EPSG:4326] round an area's pipes: the union of their buffers
    (``buffer_m``) in a metric CRS, which follows the streets the pipes run in better than a
    convex hull and never swallows a neighbouring area's middle; ``to_lonlat(x, y)`` maps the
    metric coordinates (arrays) to lon/lat."""
    lines = [LineString(c) for c in lines_m if len(c) >= 2]
    if not lines:
        return None
    area = unary_union(MultiLineString(lines).buffer(buffer_m, quad_segs=4)).simplify(buffer_m / 8)
    if isinstance(area, Polygon):
        area = MultiPolygon([area])
    if not isinstance(area, MultiPolygon) or area.is_empty:
        return None
    lonlat = shapely.transform(area, lambda xy: np.column_stack(to_lonlat(xy[:, 0], xy[:, 1])))
    return dict(mapping(lonlat))


def with_boundaries(
    areas: Sequence[AreaDraft],
    pipe_lines_m: Mapping[str, Sequence[tuple[float, float]]],
    *,
    to_lonlat: Any,
    buffer_m: float = 40.0,
) -> list[AreaDraft]:
    """The areas with their polygons from their links' geometry [metric CRS]."""
    out = []
    for a in areas:
        poly = area_polygon(
            (pipe_lines_m[lid] for lid in a.pipes if lid in pipe_lines_m),
            to_lonlat=to_lonlat,
            buffer_m=buffer_m,
        )
        out.append(AreaDraft(a.area_id, a.name, a.meters, a.members, poly, a.pipes))
    return out
