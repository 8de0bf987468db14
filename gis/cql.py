"""CQL2 filters (pygeofilter's AST) to parameterised PostGIS SQL (pure: builds, does not run).

Attributes must be among the collection's columns (anything else is refused, so a filter cannot
reach other columns or tables); every literal becomes a query parameter. Spatial literals are
GeoJSON in EPSG:4326 (CQL2's default CRS, CRS84); ``S_DWITHIN`` distances are metres measured
in EPSG:4544.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from psycopg import sql
from pygeofilter import ast, values


class CqlError(ValueError):
    """A filter that cannot be evaluated on the collection."""


_SPATIAL = {
    ast.SpatialComparisonOp.INTERSECTS: "ST_Intersects",
    ast.SpatialComparisonOp.DISJOINT: "ST_Disjoint",
    ast.SpatialComparisonOp.CONTAINS: "ST_Contains",
    ast.SpatialComparisonOp.WITHIN: "ST_Within",
    ast.SpatialComparisonOp.TOUCHES: "ST_Touches",
    ast.SpatialComparisonOp.CROSSES: "ST_Crosses",
    ast.SpatialComparisonOp.OVERLAPS: "ST_Overlaps",
    ast.SpatialComparisonOp.EQUALS: "ST_Equals",
}
_METRES = {"m": 1.0, "meters": 1.0, "metres": 1.0, "km": 1000.0, "kilometers": 1000.0}


class CqlTranslator:
    def __init__(
        self,
        columns: Collection[str],
        *,
        geom: str = "geom",
        geom_m: sql.Composable | None = None,
        time_expr: sql.Composable | None = None,
    ) -> None:
        self.columns = set(columns)
        self.geom = sql.Identifier(geom)
        self.geom_m = geom_m or sql.SQL("ST_Transform({}, 4544)").format(self.geom)
        self.time_expr = time_expr
        self.params: list[Any] = []

    def translate(self, node: Any) -> sql.Composable:
        return self._node(node)

    # ---- values
    def _value(self, v: Any) -> sql.Composable:
        if isinstance(v, ast.Attribute):
            return self._attr(v)
        if isinstance(v, values.Geometry):
            self.params.append(json.dumps(v.geometry))
            return sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)")
        if isinstance(v, values.Envelope):
            self.params.extend([v.x1, v.y1, v.x2, v.y2])
            return sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, 4326)")
        if isinstance(v, ast.Function):
            raise CqlError(f"functions are not supported in filters ({v.name})")
        if isinstance(v, ast.Arithmetic):
            ops = {"+": "+", "-": "-", "*": "*", "/": "/"}
            return sql.SQL("({} {} {})").format(
                self._value(v.lhs), sql.SQL(ops[v.op.value]), self._value(v.rhs)
            )
        if isinstance(v, (str, int, float, bool, date, datetime)) or v is None:
            self.params.append(v)
            return sql.SQL("%s")
        raise CqlError(f"unsupported value {v!r}")

    def _attr(self, a: ast.Attribute) -> sql.Composable:
        name = a.name
        if name in ("geometry", "geom"):
            return self.geom
        if name not in self.columns:
            raise CqlError(
                f"unknown property {name!r}; queryables: {', '.join(sorted(self.columns))}"
            )
        return sql.Identifier(name)

    # ---- predicates
    def _node(self, n: Any) -> sql.Composable:
        if isinstance(n, ast.And):
            return sql.SQL("({} AND {})").format(self._node(n.lhs), self._node(n.rhs))
        if isinstance(n, ast.Or):
            return sql.SQL("({} OR {})").format(self._node(n.lhs), self._node(n.rhs))
        if isinstance(n, ast.Not):
            return sql.SQL("(NOT {})").format(self._node(n.sub_node))
        if isinstance(n, ast.Comparison):
            return sql.SQL("({} {} {})").format(
                self._value(n.lhs), sql.SQL(n.op.value), self._value(n.rhs)
            )
        if isinstance(n, ast.Between):
            return sql.SQL("({} {}BETWEEN {} AND {})").format(
                self._value(n.lhs), _not(n), self._value(n.low), self._value(n.high)
            )
        if isinstance(n, ast.Like):
            return self._like(n)
        if isinstance(n, ast.In):
            lhs = self._value(n.lhs)
            items = sql.SQL(", ").join(self._value(v) for v in n.sub_nodes)
            return sql.SQL("({} {}IN ({}))").format(lhs, _not(n), items)
        if isinstance(n, ast.IsNull):
            return sql.SQL("({} IS {}NULL)").format(self._value(n.lhs), _not(n))
        if isinstance(n, ast.SpatialComparisonPredicate):
            fn = sql.SQL(_SPATIAL[n.op])
            return sql.SQL("{}({}, {})").format(fn, self._value(n.lhs), self._value(n.rhs))
        if isinstance(n, ast.BBox):
            return self._bbox(n)
        if isinstance(n, ast.SpatialDistancePredicate):
            return self._distance(n)
        if isinstance(n, ast.TemporalPredicate):
            return self._temporal(n)
        if isinstance(n, ast.Include):
            return sql.SQL("false" if n.not_ else "true")
        raise CqlError(f"unsupported filter element {type(n).__name__}")

    def _like(self, n: ast.Like) -> sql.Composable:
        lhs = self._value(n.lhs)
        self.params.append(_like_pattern(str(n.pattern), n.wildcard, n.singlechar, n.escapechar))
        op = "ILIKE" if n.nocase else "LIKE"
        return sql.SQL("({}::text {}{} %s)").format(lhs, _not(n), sql.SQL(op))

    def _bbox(self, n: ast.BBox) -> sql.Composable:
        if n.crs and "4326" not in str(n.crs) and "CRS84" not in str(n.crs):
            raise CqlError(f"BBOX in {n.crs} is not supported; use EPSG:4326")
        lhs = self._value(n.lhs)
        self.params.extend([n.minx, n.miny, n.maxx, n.maxy])
        return sql.SQL("ST_Intersects({}, ST_MakeEnvelope(%s, %s, %s, %s, 4326))").format(lhs)

    def _distance(self, n: ast.SpatialDistancePredicate) -> sql.Composable:
        """DWITHIN / BEYOND, measured in metres in EPSG:4544."""
        factor = _METRES.get(str(n.units).lower())
        if factor is None:
            raise CqlError(f"distance units {n.units!r}: use m or km")
        if not isinstance(n.lhs, ast.Attribute):
            raise CqlError("S_DWITHIN needs the geometry property first")
        self._attr(n.lhs)
        other = self._value(n.rhs)
        self.params.append(float(n.distance) * factor)
        dwithin = "ST_DWithin" if n.op == ast.SpatialDistanceOp.DWITHIN else "NOT ST_DWithin"
        return sql.SQL("{}({}, ST_Transform({}, 4544), %s)").format(
            sql.SQL(dwithin), self.geom_m, other
        )

    def _temporal(self, n: ast.TemporalPredicate) -> sql.Composable:
        lhs = self._value(n.lhs) if isinstance(n.lhs, ast.Attribute) else None
        if lhs is None:
            raise CqlError("temporal predicates need a property first")
        rhs = n.rhs
        if isinstance(rhs, values.Interval):
            start, end = rhs.start, rhs.end
        else:
            start = end = rhs
        op = n.op
        if op == ast.TemporalComparisonOp.AFTER:
            self.params.append(end)
            return sql.SQL("({} > %s)").format(lhs)
        if op == ast.TemporalComparisonOp.BEFORE:
            self.params.append(start)
            return sql.SQL("({} < %s)").format(lhs)
        if op in (
            ast.TemporalComparisonOp.DURING,
            ast.TemporalComparisonOp.TOVERLAPS,
            ast.TemporalComparisonOp.TEQUALS,
        ):
            parts = []
            if start is not None:
                self.params.append(start)
                parts.append(sql.SQL("{} >= %s").format(lhs))
            if end is not None:
                self.params.append(end)
                parts.append(sql.SQL("{} <= %s").format(lhs))
            return sql.SQL("({})").format(
                sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")
            )
        raise CqlError(f"temporal operator {op.value} is not supported")


def _not(n: Any) -> sql.Composable:
    return sql.SQL("NOT " if n.not_ else "")


def _like_pattern(pattern: str, wildcard: str, singlechar: str, escapechar: str | None) -> str:
    """A CQL2 LIKE pattern in SQL's terms: its wildcards become ``%`` and ``_``, SQL's own
    wildcards and backslashes in it are escaped, and its escape character escapes."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escapechar and c == escapechar and i + 1 < len(pattern):
            out.append("\\" + pattern[i + 1])
            i += 2
            continue
        if c == wildcard:
            out.append("%")
        elif c == singlechar:
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def translate_cql(
    node: Any,
    columns: Collection[str],
    *,
    geom: str = "geom",
    geom_m: sql.Composable | None = None,
) -> tuple[sql.Composable, list[Any]]:
    """(WHERE fragment, parameters) for a pygeofilter AST over a table's ``columns``."""
    t = CqlTranslator(columns, geom=geom, geom_m=geom_m)
    where = t.translate(node)
    return where, t.params
