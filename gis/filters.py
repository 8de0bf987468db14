"""Planner query specifications and attribute filters (pure: text in, frozen values out)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gis.layers import Column, Layer, get_layer

OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "like")
# a field is a name (install_year) or a label without spaces round it (建设年份)
_FILTER_RE = re.compile(
    r"^\s*([^\s<>=!]+?)\s*(<=|>=|!=|=|<|>|\s+in\s+|\s+like\s+)\s*(.+?)\s*$",
    re.IGNORECASE,
)


class QueryError(ValueError):
    """A planner question that cannot be asked (unknown layer, field, operator or value).

    The message is English (CLI, HTTP API, logs); ``key`` and ``values`` name the problem so
    that a screen can say it wholly in its own language (``dashboards.catalogues.planner``).
    """

    def __init__(self, message: str, key: str = "other", **values: Any) -> None:
        super().__init__(message)
        self.key = key
        self.values = values


def checked_layer(name: str) -> Layer:
    """The catalogue's layer ``name``, or QueryError naming the known ones."""
    try:
        return get_layer(name)
    except KeyError as exc:
        raise QueryError(str(exc.args[0]), "unknown_layer", layer=name) from None


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: str
    value: Any


def _coerce(layer: Layer, name: str, raw: Any) -> Any:
    col = checked_column(layer, name)
    if raw is None:
        return None
    try:
        if col.type == "int":
            return int(float(raw))
        if col.type == "float":
            return float(raw)
        if col.type == "bool":
            return str(raw).strip().lower() in ("1", "true", "t", "yes", "y")
    except ValueError:
        raise QueryError(
            f"{layer.name}.{name}: {raw!r} is not a {col.type}",
            "bad_value",
            layer=layer.name,
            field=name,
            value=str(raw),
            type=col.type,
        ) from None
    return str(raw)


def checked_column(layer: Layer, name: str) -> Column:
    """The layer's column ``name``, or QueryError (its ``values`` carry the layer, so that a
    screen can list the fields there are)."""
    try:
        return layer.column(name)
    except KeyError as exc:
        raise QueryError(str(exc.args[0]), "unknown_field", layer=layer.name, field=name) from None


def make_filter(layer_name: str, field_name: str, op: str, value: Any) -> Filter:
    layer = checked_layer(layer_name)
    op = op.strip().lower()
    if op not in OPS:
        raise QueryError(f"unknown operator {op!r}; use one of {' '.join(OPS)}", "operator", op=op)
    if op == "in":
        items = value if isinstance(value, list | tuple) else str(value).strip("()").split(",")
        return Filter(
            field_name,
            op,
            tuple(
                _coerce(layer, field_name, v.strip() if isinstance(v, str) else v) for v in items
            ),
        )
    if op == "like":
        checked_column(layer, field_name)
        return Filter(field_name, op, str(value))
    return Filter(field_name, op, _coerce(layer, field_name, value))


def parse_district(value: int | str | None) -> int | str | None:
    """A district as given: an adcode (``510104``, full-width digits too) or a name."""
    if value is None or isinstance(value, int):
        return value
    text = unicodedata.normalize("NFKC", value).strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def parse_filter(
    layer_name: str,
    text: str,
    aliases: Mapping[str, str] | None = None,
    value_aliases: Mapping[str, str] | None = None,
) -> Filter:
    """``install_year<1990``, ``kind=school``, ``material in cast_iron,steel``; typed on a
    Chinese keyboard too (full-width ＜, ＝, digits and letters: NFKC). ``aliases`` maps other
    names of a field (a screen's labels: 建设年份) to the field, ``value_aliases`` other names
    of a coded value (学校, 灰口铸铁) to the code; both keyed in lower case."""
    text = unicodedata.normalize("NFKC", text)
    m = _FILTER_RE.match(text)
    if not m:
        raise QueryError(
            f"cannot read filter {text!r} (field op value, e.g. install_year<1990)",
            "unreadable",
            text=text,
        )
    name, op, value = m.group(1).lower(), m.group(2).strip().lower(), m.group(3).strip("'\"")
    name = (aliases or {}).get(name, name)
    if value_aliases:
        items = value.split(",") if op == "in" else [value]
        value = ",".join(value_aliases.get(v.strip().lower(), v.strip()) for v in items)
    return make_filter(layer_name, name, op, value)


@dataclass(frozen=True, slots=True)
class NearLayer:
    """Keep features within ``radius_m`` of at least one feature of ``layer`` passing ``filters``."""

    layer: str
    radius_m: float
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertHistory:
    """Keep features whose sensors raised more than ``more_than`` alerts of ``kind`` recently.

    Sensors belong to a feature by ``asset_id`` (the feature id or, for links, either end
    node); with ``radius_m`` every sensor within that distance counts instead.
    """

    kind: str = "threshold_low"
    quantity: str | None = "pressure"
    since_days: float = 365.0
    more_than: int = 3
    radius_m: float | None = None


@dataclass(frozen=True, slots=True)
class PlannerQuery:
    layer: str
    filters: tuple[Filter, ...] = ()
    # an adcode, or a name as planners say it (锦江区, 锦江, Jinjiang): resolved against the
    # districts layer when the question runs (gis/planner.py ``resolve_district``)
    district: int | str | None = None
    polygon: dict[str, Any] | None = None  # GeoJSON geometry in EPSG:4326
    point: tuple[float, float] | None = None  # lon, lat
    feature: tuple[str, str] | None = None  # layer, id
    radius_m: float | None = None  # with point or feature
    nearest: int | None = None  # with point or feature: the N nearest
    near: tuple[NearLayer, ...] = ()
    alerts: AlertHistory | None = None
    limit: int = 1000
    offset: int = 0

    def check(self) -> PlannerQuery:
        get_layer(self.layer)
        if (self.radius_m is not None or self.nearest is not None) and not (
            self.point or self.feature
        ):
            raise QueryError(
                "a distance or nearest-N question needs a point or a feature", "needs_point"
            )
        if self.radius_m is not None and self.radius_m < 0:
            raise QueryError("radius_m must be >= 0")
        if self.nearest is not None and not 0 < self.nearest <= 10_000:
            raise QueryError("nearest must be between 1 and 10000")
        if not 0 < self.limit <= 100_000:
            raise QueryError("limit must be between 1 and 100000")
        if self.polygon is not None:
            from shapely.geometry import shape

            try:
                g = shape(self.polygon)
            except Exception:  # shapely raises several types for malformed GeoJSON
                raise QueryError("polygon is not a GeoJSON geometry") from None
            if g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon"):
                raise QueryError(
                    f"polygon must be a GeoJSON Polygon or MultiPolygon, not {g.geom_type}"
                )
        if self.feature:
            get_layer(self.feature[0])
        for n in self.near:
            get_layer(n.layer)
        return self


# --- text forms shared by the CLI and the HTTP API -----------------------------------------------


def parse_point(text: str) -> tuple[float, float]:
    """``lon,lat`` in EPSG:4326."""
    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise QueryError(
            f"a point is lon,lat (EPSG:4326), got {text!r}", "point", text=text
        ) from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise QueryError(f"point {text!r} is not a lon,lat in degrees", "point", text=text)
    return lon, lat


def parse_feature_ref(text: str) -> tuple[str, str]:
    """``layer:id``."""
    layer, sep, fid = text.partition(":")
    if not sep or not fid:
        raise QueryError(f"a feature is layer:id, got {text!r}")
    get_layer(layer)
    return layer, fid


def parse_near(text: str) -> NearLayer:
    """``layer:radius_m[:filter;filter...]``, e.g. ``facilities:500:kind=school``."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise QueryError(f"near is layer:radius_m[:filters], got {text!r}")
    checked_layer(parts[0])
    try:
        radius = float(parts[1])
    except ValueError:
        raise QueryError(f"near radius must be metres, got {parts[1]!r}") from None
    filters = tuple(
        parse_filter(parts[0], f) for f in (parts[2].split(";") if len(parts) > 2 else []) if f
    )
    return NearLayer(parts[0], radius, filters)


def parse_alert_history(text: str) -> AlertHistory:
    """``kind:quantity:days:more_than[:radius_m]``; empty quantity means any quantity."""
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise QueryError(
            f"alerts is kind:quantity:days:more_than[:radius_m], e.g. threshold_low:pressure:365:3;"
            f" got {text!r}"
        )
    try:
        return AlertHistory(
            kind=parts[0],
            quantity=parts[1] or None,
            since_days=float(parts[2]),
            more_than=int(parts[3]),
            radius_m=float(parts[4]) if len(parts) == 5 and parts[4] else None,
        )
    except ValueError:
        raise QueryError(f"alerts: days, count and radius must be numbers in {text!r}") from None


def build_query(
    layer: str,
    *,
    where: list[str] | tuple[str, ...] = (),
    district: int | str | None = None,
    polygon: dict[str, Any] | None = None,
    point: str | None = None,
    feature: str | None = None,
    radius_m: float | None = None,
    nearest: int | None = None,
    near: list[str] | tuple[str, ...] = (),
    alerts: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> PlannerQuery:
    """A checked ``PlannerQuery`` from the text forms the CLI and the HTTP API accept."""
    checked_layer(layer)
    return PlannerQuery(
        layer=layer,
        filters=tuple(parse_filter(layer, w) for w in where if w),
        district=parse_district(district),
        polygon=polygon,
        point=parse_point(point) if point else None,
        feature=parse_feature_ref(feature) if feature else None,
        radius_m=radius_m,
        nearest=nearest,
        near=tuple(parse_near(n) for n in near if n),
        alerts=parse_alert_history(alerts) if alerts else None,
        limit=limit,
        offset=offset,
    ).check()


def query_layers(q: PlannerQuery) -> list[str]:
    """Every layer a planner question reads (a filter on a layer reads it too): each must be
    readable by whoever asks, and the answer's data class is the highest of theirs."""
    names = [q.layer]
    if q.feature:
        names.append(q.feature[0])
    names += [n.layer for n in q.near]
    if q.alerts:
        names += ["sensors", "alert_locations"]
    if q.district is not None:
        names.append("districts")
    return names
