"""Bounds and shapes of the HTTP parameters (pure): every number is finite and in range, every
name an identifier, before anything reaches a query. A bad value is a ``ParamError`` (a
``QueryError``, so a 400 with the reason), never a 500 (docs/gis.md, Limits).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gis.filters import QueryError

MAX_LIMIT = 10_000  # features per answer
DEFAULT_LIMIT = 1_000
MAX_OFFSET = 1_000_000
MAX_ZOOM = 30.0
MAX_RADIUS_M = 50_000.0  # Chengdu is ~200 km across; a 50 km radius is already the city
MAX_NEAREST = 10_000
MAX_PARAM_CHARS = 20_000  # a query-string value (a polygon may be long, not megabytes)
_INT_RE = re.compile(r"^[+-]?\d{1,12}$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class ParamError(QueryError):
    """A parameter out of range or of the wrong shape."""


def check_lengths(args: Mapping[str, Any]) -> None:
    for k, v in args.items():
        if len(k) > 64 or len(str(v)) > MAX_PARAM_CHARS:
            raise ParamError(f"parameter {k[:64]!r} is too long")


def parse_int(value: str | None, name: str, *, default: int | None, lo: int, hi: int) -> int | None:
    """A whole number in ``lo..hi`` (``default`` when absent or empty)."""
    if value is None or value == "":
        return default
    text = value.strip()
    if not _INT_RE.match(text):
        raise ParamError(f"{name} must be a whole number between {lo} and {hi}, not {value[:40]!r}")
    n = int(text)
    if not lo <= n <= hi:
        raise ParamError(f"{name} must be between {lo} and {hi}, not {n}")
    return n


def parse_float(
    value: str | None, name: str, *, default: float | None, lo: float, hi: float
) -> float | None:
    """A finite number in ``lo..hi`` (no inf, nan or hex floats)."""
    if value is None or value == "":
        return default
    try:
        x = float(value.strip())
    except ValueError:
        raise ParamError(f"{name} must be a number, not {value[:40]!r}") from None
    if not math.isfinite(x):
        raise ParamError(f"{name} must be a finite number, not {value[:40]!r}")
    if not lo <= x <= hi:
        raise ParamError(f"{name} must be between {lo:g} and {hi:g}, not {x:g}")
    return x


def parse_limit(value: str | None, default: int = DEFAULT_LIMIT) -> int:
    n = parse_int(value, "limit", default=default, lo=1, hi=MAX_LIMIT)
    assert n is not None
    return n


def parse_offset(value: str | None) -> int:
    n = parse_int(value, "offset", default=0, lo=0, hi=MAX_OFFSET)
    assert n is not None
    return n


def parse_zoom(value: str | None, default: float) -> float:
    z = parse_float(value, "zoom", default=default, lo=0.0, hi=MAX_ZOOM)
    assert z is not None
    return z


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """``minlon,minlat,maxlon,maxlat`` in degrees (EPSG:4326), min <= max."""
    if value is None or value == "":
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise ParamError("bbox is minlon,minlat,maxlon,maxlat (four numbers, EPSG:4326)")
    nums = []
    for i, p in enumerate(parts):
        lo, hi = (-180.0, 180.0) if i % 2 == 0 else (-90.0, 90.0)
        x = parse_float(p, "bbox", default=None, lo=lo, hi=hi)
        if x is None:
            raise ParamError("bbox is minlon,minlat,maxlon,maxlat (four numbers, EPSG:4326)")
        nums.append(x)
    if nums[0] > nums[2] or nums[1] > nums[3]:
        raise ParamError("bbox: min must not exceed max (minlon,minlat,maxlon,maxlat)")
    return nums[0], nums[1], nums[2], nums[3]


def parse_choice(value: str | None, name: str, choices: tuple[str, ...], default: str) -> str:
    v = (value or default).strip().lower()
    if v not in choices:
        raise ParamError(f"{name} must be one of {', '.join(choices)}, not {v[:40]!r}")
    return v


def parse_ident(value: str, name: str) -> str:
    """A feature or link id: letters, digits and ``_ . : -`` (1-128 characters)."""
    if not _ID_RE.match(value):
        raise ParamError(f"{name} is not an id (letters, digits, _ . : -): {value[:40]!r}")
    return value


def is_name(value: str) -> bool:
    return bool(_NAME_RE.match(value))


# --- OGC API - Features: items parameters ------------------------------------------------------

OGC_FORMATS = ("json", "html")
OGC_RESERVED = {
    "f",
    "lang",
    "limit",
    "offset",
    "bbox",
    "bbox-crs",
    "crs",
    "datetime",
    "sortby",
    "properties",
    "skipGeometry",
    "resulttype",
    "filter",
    "filter-lang",
    "filter-crs",
    "q",
}
_DATETIME_RE = re.compile(
    r"^(\.\.|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?)?)?$"
)


def check_ogc_params(args: Mapping[str, str], *, items: bool) -> None:
    """Bounds on an OGC request's query string (``items``: an items or item route).

    pygeoapi would turn some of these into 500s (a negative offset, inf in a bbox); its own
    checks stay behind these."""
    check_lengths(args)
    parse_choice(args.get("f"), "f", OGC_FORMATS, "json")
    if not items:
        return
    parse_limit(args.get("limit"), default=100)
    parse_offset(args.get("offset"))
    if "bbox" in args:
        bbox = parse_bbox(args.get("bbox"))
        if bbox is None:
            raise ParamError("bbox is empty")
    if "resulttype" in args:
        parse_choice(args.get("resulttype"), "resulttype", ("results", "hits"), "results")
    if "skipGeometry" in args:
        parse_choice(args.get("skipGeometry"), "skipGeometry", ("true", "false"), "false")
    for key in ("sortby", "properties"):
        for item in (v.strip() for v in (args.get(key) or "").split(",") if v.strip()):
            if not is_name(item.lstrip("+-") if key == "sortby" else item):
                raise ParamError(f"{key}: {item[:40]!r} is not a property name")
    if "filter-lang" in args:
        parse_choice(
            args.get("filter-lang"), "filter-lang", ("cql-text", "cql2-text", "cql2-json"), ""
        )
    if "datetime" in args:
        for part in args["datetime"].split("/"):
            if not _DATETIME_RE.match(part):
                raise ParamError(
                    "datetime is an RFC 3339 instant or interval (e.g. 2026-01-01T00:00:00Z/..)"
                )
    for key in args:
        if key not in OGC_RESERVED and not is_name(key):
            raise ParamError(f"{key[:40]!r} is not a property name")
