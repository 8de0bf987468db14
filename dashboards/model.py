"""Values the pages show, and the pure rules about them (states, severities, text, time).

Pure module: no database, no web framework. Query functions return these frozen values; figure
builders and layouts take them.
"""

from __future__ import annotations

import functools
import html
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.api import SEVERITIES as ALERT_SEVERITIES

# a sensor is silent when its newest reading is older than this many expected intervals
SILENT_FACTOR = 3.0

# lost: silent as a member of an open source loss (alerts/source_loss.py): its area is unknown
SENSOR_STATES = ("alarm", "lost", "silent", "nodata", "normal")
NOT_REPORTING = ("lost", "silent", "nodata")  # the one definition of "not online"
SEVERITIES = tuple(reversed(ALERT_SEVERITIES))  # most severe first, as the pages list them
SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES), start=1)}  # critical = 4
UTILITIES = ("water", "power", "gas")

# dark, wall-friendly palette; state colours also differ in lightness for colour-blind viewers
STATE_COLOURS = {
    "normal": "#2ecc71",
    "alarm": "#ff4d4f",
    "silent": "#f5a623",
    "nodata": "#7f8c9a",
    "lost": "#c0c7d0",
}
UTILITY_COLOURS = {"water": "#36cfc9", "power": "#ffc53d", "gas": "#ff85c0"}
DISTRICT_FILL = {
    "normal": "rgba(46, 204, 113, 0.10)",
    "silent": "rgba(245, 166, 35, 0.22)",
    "alarm": "rgba(255, 77, 79, 0.35)",
    "critical": "rgba(255, 45, 85, 0.55)",
    "unknown": "rgba(160, 170, 182, 0.40)",  # most of its sensors are in a source loss
}


@dataclass(frozen=True, slots=True)
class District:
    adcode: int
    name_zh: str
    name_en: str
    # outer and inner rings as (lon, lat) tuples [degrees, EPSG:4326], simplified for display
    rings: tuple[tuple[tuple[float, float], ...], ...]


@dataclass(frozen=True, slots=True)
class DistrictSummary:
    adcode: int
    name_zh: str
    name_en: str
    sensors: int
    alarm: int
    silent: int
    nodata: int
    open_alerts: int
    worst_severity: str | None
    lost: int = 0  # of ``silent``: in an open source loss

    @property
    def not_reporting(self) -> int:
        return self.silent + self.nodata


@dataclass(frozen=True, slots=True)
class SensorPoint:
    sensor_id: str
    name: str
    utility: str
    sensor_type: str
    district_adcode: int | None
    lon: float
    lat: float
    state: str
    last_ts: datetime | None


@dataclass(frozen=True, slots=True)
class GridCell:
    lon: float  # cell centre [degrees]
    lat: float
    sensors: int
    alarm: int
    silent: int  # lost ones included
    nodata: int
    lost: int = 0


@dataclass(frozen=True, slots=True)
class SourceLossView:
    """An open source loss as the pages show it (``source_losses``, alerts/source_loss.py)."""

    loss_id: int
    scope: str  # stream | utility | district
    scope_value: str | None  # the utility, or the district's adcode
    district_zh: str | None
    district_en: str | None
    sensors: int
    group_size: int
    since: datetime  # nothing came from its sensors after this
    back_at: datetime | None  # data came back; it closes by itself once settled
    acknowledged_by: str | None = None  # the person who took it on (the console's button)
    acknowledged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: int
    raised_at: datetime
    severity: str
    state: str
    sensor_id: str
    sensor_name: str
    utility: str
    quantity: str
    district_zh: str | None
    district_en: str | None
    value: float
    limit_value: float | None
    message_zh: str
    message_en: str
    assignee: str | None = None
    # shelving (alerts.lifecycle): until when, by whom and why; None when not shelved
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None

    def message(self, lang: str) -> str:
        return self.message_en if lang == "en" else self.message_zh

    def district(self, lang: str) -> str:
        return (self.district_en if lang == "en" else self.district_zh) or "—"


@dataclass(frozen=True, slots=True)
class UtilityFigures:
    utility: str
    sensors: int
    reporting: int  # fresh readings (normal or alarm)
    silent: int  # lost ones included
    nodata: int
    open_by_severity: tuple[tuple[str, int], ...]
    completeness: float | None  # data_trust's completeness over the last 60 minutes [0..1]
    # customers without supply in the engine's open incidents (not those whose alerts all cleared)
    customers_cut: int
    incidents_open: int = 0  # the open incidents those customers belong to
    lost: int = 0  # of ``silent``: in an open source loss

    @property
    def not_reporting(self) -> int:
        return self.silent + self.nodata

    @property
    def open_alerts(self) -> int:
        return sum(n for _s, n in self.open_by_severity)

    def open_of(self, severity: str) -> int:
        return dict(self.open_by_severity).get(severity, 0)


@dataclass(frozen=True, slots=True)
class Reading:
    ts: datetime
    value: float
    min_value: float | None = None
    max_value: float | None = None


# -- text ------------------------------------------------------------------------------------
# bidirectional overrides and zero-width characters can make a name display as something else
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\x00-\x08\x0b-\x1f\x7f]")


def display_text(value: object) -> str:
    """A string from a sensor or a user, made safe to show as text in any component.

    ``$`` becomes the full-width ``＄`` so that MathJax (which Plotly and Markdown use for
    ``$...$``) never typesets it; invisible and direction-changing characters are removed.
    HTML needs no escaping here: Dash components render strings as text.
    """
    return _INVISIBLE.sub("", str(value)).replace("$", "＄")


@functools.lru_cache(maxsize=100_000)  # sensor names repeat on every refresh
def plot_text(value: object) -> str:
    """``display_text`` for Plotly labels and hover text, which interpret a subset of HTML
    (``<a href>``, ``<b>``, ``<br>``): escape it so that it shows literally."""
    return html.escape(display_text(value), quote=False)


def percent(share: float | None) -> str:
    """A share [0..1] as a percentage with one decimal, or a dash when unknown."""
    return "—" if share is None else f"{100 * share:.1f}%"


# -- time ------------------------------------------------------------------------------------
def local_time(ts: datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An aware timestamp formatted in the operators' time zone (Asia/Shanghai)."""
    if ts is None:
        return "—"
    return ts.astimezone(ZoneInfo(tz)).strftime(fmt)


def age_parts(now: datetime, then: datetime) -> tuple[str, int]:
    """(unit key, count) for a compact age: minutes below 2 h, hours below 2 d, then days."""
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 7200:
        return "unit.min", int(seconds // 60)
    if seconds < 172_800:
        return "unit.hour", int(seconds // 3600)
    return "unit.day", int(seconds // 86_400)


def time_left_parts(now: datetime, until: datetime) -> tuple[str, int]:
    """(unit key, count) for the time left until ``until``, rounded up (a shelf ending in
    2 h 59 min says 3 h): minutes up to 2 h, hours up to 2 d, then days."""
    seconds = max(0.0, (until - now).total_seconds())
    if seconds <= 7200:
        return "unit.min", math.ceil(seconds / 60)
    if seconds <= 172_800:
        return "unit.hour", math.ceil(seconds / 3600)
    return "unit.day", math.ceil(seconds / 86_400)


def worst_severity(severities: list[str | None]) -> str | None:
    ranked = [s for s in severities if s in SEVERITY_RANK]
    return max(ranked, key=SEVERITY_RANK.__getitem__) if ranked else None


def district_condition(summary: DistrictSummary, lost_share: float = 0.5) -> str:
    """How a district is drawn: critical > unknown (at least ``lost_share`` of its sensors in a
    source loss: its state is not known, which is not an alarm) > alarm > silent > normal."""
    if summary.worst_severity == "critical":
        return "critical"
    if summary.lost and summary.lost >= lost_share * summary.sensors:
        return "unknown"
    if summary.open_alerts or summary.alarm:
        return "alarm"
    if summary.silent:
        return "silent"
    return "normal"


def cell_state(cell: GridCell, silent_share: float = 0.2) -> str:
    """A grid cell's colour: alarm if any sensor in it alarms; lost (unknown), silent or no
    data when at least ``silent_share`` of its sensors are (one silent sensor among 50 is not a
    silent area)."""
    if cell.alarm:
        return "alarm"
    if cell.sensors and cell.lost / cell.sensors >= silent_share:
        return "lost"
    if cell.sensors and (cell.silent + cell.nodata) / cell.sensors >= silent_share:
        return "silent" if cell.silent >= cell.nodata else "nodata"
    return "normal"


def choose_grid_cell_deg(span_lon_deg: float, target_cells_across: int = 60) -> float:
    """A grid cell size [degrees] that gives about ``target_cells_across`` cells over a span,
    rounded to a readable step so that cells stay put while a user pans."""
    raw = max(span_lon_deg, 1e-6) / target_cells_across
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5):
        if raw <= step:
            return step
    return 1.0


def window_bounds(now: datetime, window: str) -> tuple[datetime, datetime]:
    """The [start, end) of a named chart window ending now."""
    spans = {
        "1h": timedelta(hours=1),
        "6h": timedelta(hours=6),
        "24h": timedelta(hours=24),
        "7d": timedelta(days=7),
        "30d": timedelta(days=30),
    }
    return now - spans.get(window, spans["24h"]), now


def choose_readings_source(window_s: float) -> str:
    """Raw readings for short windows, rollups for long ones (about <= 2,000 points a chart)."""
    if window_s > 2 * 86_400:
        return "1h"
    if window_s > 6 * 3600:
        return "1m"
    return "raw"


View = tuple[tuple[float, float], tuple[float, float]]  # ((lon0, lon1), (lat0, lat1)) [degrees]


def parse_view(relayout: dict | None, previous: View | None) -> View | None:
    """The map's visible range after a Plotly relayout event (None: the whole city)."""
    if not relayout:
        return previous
    if relayout.get("xaxis.autorange") or (relayout.get("autosize") and len(relayout) == 1):
        return None if relayout.get("xaxis.autorange") else previous
    try:
        if "xaxis.range" in relayout:  # Plotly.relayout with whole ranges
            x = tuple(float(v) for v in relayout["xaxis.range"][:2])
            y = tuple(float(v) for v in relayout["yaxis.range"][:2])
        else:  # a zoom or pan by the user
            x = (float(relayout["xaxis.range[0]"]), float(relayout["xaxis.range[1]"]))
            y = (float(relayout["yaxis.range[0]"]), float(relayout["yaxis.range[1]"]))
    except (KeyError, TypeError, ValueError, IndexError):
        return previous
    if len(x) != 2 or len(y) != 2:
        return previous
    return (min(x), max(x)), (min(y), max(y))


def view_bbox(view: View | None) -> tuple[float, float, float, float] | None:
    return None if view is None else (view[0][0], view[1][0], view[0][1], view[1][1])


# -- geometry for plotting ------------------------------------------------------------------
XY = list[float | None]  # one Plotly coordinate array; None breaks a line between parts


def geometry_xy(geometries: Iterable[dict[str, Any]]) -> tuple[XY, XY, list[float], list[float]]:
    """GeoJSON geometries (lon/lat) as Plotly arrays: (xs, ys) of every line and ring, parts
    separated by None (one trace draws them all), and (xs, ys) of the points."""
    xs: XY = []
    ys: XY = []
    px: list[float] = []
    py: list[float] = []
    for geom in geometries:
        kind, coords = geom.get("type"), geom.get("coordinates") or []
        if kind == "Point":
            px.append(coords[0])
            py.append(coords[1])
            continue
        parts: list[Any]
        if kind == "LineString":
            parts = [coords]
        elif kind in ("MultiLineString", "Polygon"):
            parts = coords
        elif kind == "MultiPolygon":
            parts = [ring for polygon in coords for ring in polygon]
        else:
            parts = []
        for part in parts:
            xs += [c[0] for c in part] + [None]
            ys += [c[1] for c in part] + [None]
    return xs, ys, px, py


# -- alert actions ---------------------------------------------------------------------------
SHELVE_MIN_H = 1.0
SHELVE_MAX_H = 72.0  # the console shelves for 1-72 h (alerts.lifecycle allows up to 7 days)
SHELVE_DEFAULT_H = 4.0


def parse_shelve_hours(value: object) -> tuple[float, bool] | None:
    """(hours, clamped) for the shelve form's value, or None when it is not a number of hours.

    Empty means the default (4 h); any finite number is clamped to 1-72 h (``clamped`` says it
    was). The value comes from the browser, so anything may arrive: text, a list, 1e308, NaN.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return SHELVE_DEFAULT_H, False
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > 32:
        return None  # int("9" * 5000) is slow work for nothing
    if isinstance(value, int):  # compared as it is: float(10**400) would overflow
        bounded_int = min(int(SHELVE_MAX_H), max(int(SHELVE_MIN_H), value))
        return float(bounded_int), bounded_int != value
    try:
        hours = float(value)
    except ValueError:
        return None
    if not math.isfinite(hours):
        return None
    bounded = min(SHELVE_MAX_H, max(SHELVE_MIN_H, hours))
    return bounded, bounded != hours


# -- incidents: the wall's headline and the console's facts ----------------------------------
@dataclass(frozen=True)
class WallIncident:
    """An open incident with alerts that still need someone (not cleared, not shelved)."""

    kind: str
    utility: str
    severity: str
    district_zh: str | None
    district_en: str | None
    open_alerts: int

    def district(self, lang: str) -> str:
        return (self.district_en if lang == "en" else self.district_zh) or "—"


@dataclass(frozen=True)
class IncidentFacts:
    """The incident an alert belongs to, counted from the database as it is now (the
    engine's explanation keeps the counts of the moment it was written)."""

    utility: str
    kind: str
    likely_location: str | None  # the link the engine placed it on (alerts/enrich.py)
    affected: dict[str, Any]  # incidents.affected: valves, customers, facilities
    explanation: tuple[str, str]
    alerts: int  # member alerts
    open_alerts: int  # of them not cleared, resolved or closed
    sensors: int  # distinct member sensors
    extent_m: float  # the greatest distance between two member sensors [m]
