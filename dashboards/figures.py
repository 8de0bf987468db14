"""Pure Plotly figure builders: values in, Plotly JSON (``{"data", "layout"}``) out. No database,
no Dash. Plain dicts rather than ``go.Figure``: the ``go`` objects validate every point and load
the default template on each build (0.1-0.3 s per refresh at city scale).

Maps are drawn on cartesian axes in lon/lat [degrees] with the y axis scaled by 1/cos(latitude),
so the city keeps its shape without any tile server or glyph download (the government network
has no internet). All text from sensors goes through ``plot_text``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dashboards.i18n import t
from dashboards.model import (
    DISTRICT_FILL,
    SENSOR_STATES,
    STATE_COLOURS,
    UTILITY_COLOURS,
    XY,
    District,
    DistrictSummary,
    GridCell,
    Reading,
    SensorPoint,
    View,
    cell_state,
    district_condition,
    geometry_xy,
    local_time,
    plot_text,
)

PAPER = "rgba(0,0,0,0)"
FONT = dict(
    family="Noto Sans CJK SC, Source Han Sans SC, Microsoft YaHei, PingFang SC, sans-serif",
    color="#e6edf3",
    size=16,
)
CHENGDU_LAT = 30.66  # [degrees] for the map aspect
# WebGL is used only when there are many points: SVG is crisper and needs no GPU for a few hundred
WEBGL_FROM = 2000
GRID = "#30363d"


def build_empty_figure() -> dict[str, Any]:
    """A blank dark figure for a graph that has not received data yet (no white flash)."""
    return {
        "data": [],
        "layout": _layout(8, xaxis={"visible": False}, yaxis={"visible": False}),
    }


# -- maps --------------------------------------------------------------------------------------
def build_city_map_figure(
    districts: Sequence[District],
    summaries: Sequence[DistrictSummary],
    *,
    lang: str,
    sensors: Sequence[SensorPoint] = (),
    cells: Sequence[GridCell] = (),
    show_districts: bool = True,
    view: View | None = None,
    marker_size: int = 11,
    uirevision: str = "map",
    networks: dict[str, tuple[XY, XY]] | None = None,
    facilities: Sequence[tuple[str, str, str, str, float, float]] = (),
    alarms: Sequence[SensorPoint] = (),
    alarm_marker_size: int | None = None,
    legend_size: int = 16,
) -> dict[str, Any]:
    """Districts filled by condition, sensors coloured by state (or grid cells by count).

    Returned as plain Plotly JSON (``{"data": [...], "layout": {...}}``), which ``dcc.Graph``
    takes as it is: building ``go`` objects validates every point and cost about 0.3 s per
    5,000 sensors. ``view`` is ((lon0, lon1), (lat0, lat1)) to keep the user's zoom;
    ``uirevision`` keeps it across refreshes. ``alarms`` are drawn when ``sensors`` are not.
    ``alarm_marker_size`` [px] sizes alarming sensors apart (the wall: they must carry 3 m);
    by default they are ``marker_size`` + 5.
    """
    data = _district_traces(districts, summaries, lang) if show_districts else []
    for utility, (xs, ys) in (networks or {}).items():
        if xs:
            network = _lines(xs, ys, t(lang, "utility." + utility), UTILITY_COLOURS[utility], 1.2)
            data.append(network | {"type": "scattergl", "opacity": 0.7})
    if facilities:
        data.append(_facility_trace(facilities, lang))
    if cells:
        data.extend(_cell_traces(cells, lang))
    if sensors or alarms:
        alarm_size = alarm_marker_size or marker_size + 5
        data.extend(_sensor_traces(sensors or alarms, lang, marker_size, alarm_size))
    return {"data": data, "layout": _map_layout(districts, view, uirevision, legend_size)}


# an unknown district (its sensors' source lost) is hatched as well as grey: told apart from a
# quiet one without colour (dashboards/areas_map.py hatches unknown metered areas the same way)
UNKNOWN_HATCH = {"fillpattern": {"shape": "/", "fgcolor": "#c0c7d0", "solidity": 0.3}}


def _district_traces(
    districts: Sequence[District], summaries: Sequence[DistrictSummary], lang: str
) -> list[dict[str, Any]]:
    """Each district's outline, filled by its condition, with its counts on hover."""
    by_code = {s.adcode: s for s in summaries}
    traces = []
    for d in districts:
        xs, ys, _px, _py = geometry_xy([{"type": "Polygon", "coordinates": d.rings}])
        summary = by_code.get(d.adcode)
        condition = district_condition(summary) if summary else "normal"
        name = d.name_en if lang == "en" else d.name_zh
        hover = plot_text(name)
        if summary:
            hover += (
                f"<br>{t(lang, 'col.sensors')}: {summary.sensors}"
                f"<br>{t(lang, 'col.alerts')}: {summary.open_alerts}"
                f"<br>{t(lang, 'col.silent')}: {summary.silent}"
            )
        traces.append(
            (UNKNOWN_HATCH if condition == "unknown" else {})
            | {
                "type": "scatter",
                "x": xs,
                "y": ys,
                "mode": "lines",
                "fill": "toself",
                "fillcolor": DISTRICT_FILL[condition],
                "line": {
                    "color": "#ff2d55" if condition == "critical" else "#5b7290",
                    "width": 3 if condition in ("critical", "alarm") else 1.2,
                },
                "hoverinfo": "text",
                "hoveron": "fills",
                "text": hover,
                "name": plot_text(name),
                "showlegend": False,
            }
        )
    return traces


def _facility_trace(
    facilities: Sequence[tuple[str, str, str, str, float, float]], lang: str
) -> dict[str, Any]:
    names = [plot_text(f[3] if lang == "en" and f[3] else f[2]) for f in facilities]
    xs, ys = [f[4] for f in facilities], [f[5] for f in facilities]
    marker = {"symbol": "cross", "size": 11, "color": "#b37feb"}
    trace = _points(xs, ys, t(lang, "map.layer.facilities"), **marker)
    return trace | {"text": names, "hoverinfo": "text"}


def _lines(xs: XY, ys: XY, name: str, colour: str, width: float) -> dict[str, Any]:
    """One line trace (parts separated by None) that shows no hover label."""
    return {
        "type": "scatter",
        "x": xs,
        "y": ys,
        "mode": "lines",
        "line": {"color": colour, "width": width},
        "name": name,
        "hoverinfo": "skip",
    }


def _points(xs: Sequence[Any], ys: Sequence[Any], name: str, **marker: Any) -> dict[str, Any]:
    """One marker trace."""
    return {"type": "scatter", "x": xs, "y": ys, "mode": "markers", "name": name, "marker": marker}


def _sensor_traces(
    sensors: Sequence[SensorPoint], lang: str, marker_size: int, alarm_size: int
) -> list[dict[str, Any]]:
    kind = "scattergl" if len(sensors) >= WEBGL_FROM else "scatter"
    traces = []
    for state in SENSOR_STATES[::-1]:  # alarms drawn last, on top
        pts = [s for s in sensors if s.state == state]
        if not pts:
            continue
        label = t(lang, "state." + state)
        utility = {u: t(lang, "utility." + u) for u in ("water", "power", "gas")}
        traces.append(
            {
                "type": kind,
                "x": [p.lon for p in pts],
                "y": [p.lat for p in pts],
                "mode": "markers",
                "marker": {
                    "color": STATE_COLOURS[state],
                    "size": alarm_size if state == "alarm" else marker_size,
                    "line": {"color": "#0d1117", "width": 1},
                    "symbol": "diamond" if state == "alarm" else "circle",
                },
                "name": f"{label} ({len(pts)})",
                "customdata": [p.sensor_id for p in pts],
                "text": [
                    f"{plot_text(p.name)}<br>{plot_text(p.sensor_id)}<br>"
                    f"{utility.get(p.utility, '')} · {label}"
                    for p in pts
                ],
                "hoverinfo": "text",
            }
        )
    return traces


def _cell_traces(cells: Sequence[GridCell], lang: str) -> list[dict[str, Any]]:
    """Grid cells as squares sized by sensor count and coloured by ``cell_state``."""
    biggest = max(c.sensors for c in cells)
    groups: dict[str, list[GridCell]] = {s: [] for s in SENSOR_STATES}
    for c in cells:
        groups[cell_state(c)].append(c)
    traces = []
    for state in SENSOR_STATES[::-1]:
        group = groups[state]
        if not group:
            continue
        traces.append(
            {
                "type": "scattergl",
                "x": [c.lon for c in group],
                "y": [c.lat for c in group],
                "mode": "markers",
                "marker": {
                    "color": STATE_COLOURS[state],
                    "symbol": "square",
                    "size": [6 + 14 * math.sqrt(c.sensors / biggest) for c in group],
                    "opacity": 0.8,
                },
                "name": t(lang, "map.cells", state=t(lang, "state." + state), n=len(group)),
                "text": [
                    f"{t(lang, 'col.sensors')}: {c.sensors}<br>{t(lang, 'state.alarm')}: {c.alarm}"
                    f"<br>{t(lang, 'state.silent')}: {c.silent}<br>"
                    f"{t(lang, 'state.nodata')}: {c.nodata}"
                    for c in group
                ],
                "hoverinfo": "text",
            }
        )
    return traces


def _map_layout(
    districts: Sequence[District], view: View | None, uirevision: str, legend_size: int = 16
) -> dict[str, Any]:
    if view is None and districts:
        lons = [p[0] for d in districts for r in d.rings for p in r]
        lats = [p[1] for d in districts for r in d.rings for p in r]
        pad = 0.02
        view = ((min(lons) - pad, max(lons) + pad), (min(lats) - pad, max(lats) + pad))
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    return _layout(
        8,
        xaxis={**axis, "range": list(view[0]) if view else None},
        yaxis={
            **axis,
            "range": list(view[1]) if view else None,
            "scaleanchor": "x",
            "scaleratio": 1 / math.cos(math.radians(CHENGDU_LAT)),
        },
        uirevision=uirevision,
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 0.0,
            "xanchor": "left",
            "x": 0.0,
            "bgcolor": "rgba(13,17,23,0.7)",
            "font": {"size": legend_size},
        },
        dragmode="pan",
    )


def _layout(margin: int, **extra: Any) -> dict[str, Any]:
    return {
        "paper_bgcolor": PAPER,
        "plot_bgcolor": PAPER,
        "font": FONT,
        "margin": {"l": margin, "r": margin, "t": margin, "b": margin},
        "hoverlabel": {"font": {"family": FONT["family"], "size": 16}},
        **extra,
    }


IMPACT_STYLE = {  # role from gis.analysis.fetch_isolation -> (colour, width or size, label key)
    "without_supply": ("#f5a623", 3, "incident.without_supply"),
    "segment": ("#ff2d55", 5, "incident.segment"),
    "valve_to_close": ("#36cfc9", 13, "incident.valve"),
    "facility_without_supply": ("#b37feb", 13, "incident.facility"),
}


def build_incident_map_figure(
    districts: Sequence[District],
    location: tuple[float, float],
    features: Sequence[dict[str, Any]],
    *,
    lang: str,
    span_deg: float = 0.012,
    context: tuple[XY, XY] | None = None,
    district_adcode: int | None = None,
) -> dict[str, Any]:
    """A small map around one alert, drawn from our own layers (no tiles, works offline):
    district boundaries as lines (the alert's own district highlighted and named), the network
    around it (``context``), the cut-off and closed-off network (``features`` with a ``role``
    property, GeoJSON in EPSG:4326), valves to close, facilities without supply, the sensor.

    Districts are outlines, not fills: a view of a few hundred metres lies inside one district,
    and a filled polygon made the whole map one dark square (issue 16). The view reaches to the
    alert's district boundary when it is within ``BOUNDARY_REACH_DEG``."""
    lon, lat = location
    xs, ys, px, py = geometry_xy(f.get("geometry") or {} for f in features)
    xs_all = [lon, *px, *(x for x in xs if x is not None)]
    ys_all = [lat, *py, *(y for y in ys if y is not None)]
    home = next((d for d in districts if d.adcode == district_adcode), None)
    edge = _nearest_boundary_point(home, location) if home else None
    if edge is not None:
        xs_all.append(edge[0])
        ys_all.append(edge[1])
    # the sensor and everything the isolation touches, with a margin (at least ``span_deg``)
    half = max(span_deg / 2, 0.6 * (max(xs_all) - min(xs_all)), 0.6 * (max(ys_all) - min(ys_all)))
    cx, cy = (max(xs_all) + min(xs_all)) / 2, (max(ys_all) + min(ys_all)) / 2
    view = ((cx - half, cx + half), (cy - half, cy + half))
    data: list[dict[str, Any]] = []
    for d in districts:
        ring_x, ring_y, _px, _py = geometry_xy([{"type": "Polygon", "coordinates": d.rings}])
        if d is home:
            continue
        outline = _lines(ring_x, ring_y, plot_text(_district_name(d, lang)), "#5b7290", 1.5)
        data.append(outline | {"showlegend": False})
    if home is not None:  # drawn last among the districts: on top, and named in the legend
        ring_x, ring_y, _px, _py = geometry_xy([{"type": "Polygon", "coordinates": home.rings}])
        name = t(lang, "incident.district", name=plot_text(_district_name(home, lang)))
        boundary = _lines(ring_x, ring_y, name, "#fadb14", 3)
        boundary["line"]["dash"] = "dash"
        data.append(boundary)
    if context and context[0]:  # the surrounding network, for orientation (pipes follow streets)
        data.append(_lines(*context, t(lang, "incident.network"), "#8b9bb0", 1.5))
    for role, (colour, size, key) in IMPACT_STYLE.items():
        mine = [
            f.get("geometry") or {}
            for f in features
            if (f.get("properties") or {}).get("role") == role
        ]
        xs, ys, px, py = geometry_xy(mine)
        if xs:
            data.append(_lines(xs, ys, t(lang, key), colour, size))
        if px:
            symbol = "x" if role == "valve_to_close" else "cross"
            data.append(_points(px, py, t(lang, key), color=colour, size=size, symbol=symbol))
    sensor = {"color": "#ff2d55", "size": 16, "symbol": "diamond"}
    white = {"color": "#ffffff", "width": 2}
    data.append(_points([lon], [lat], t(lang, "incident.sensor"), **sensor, line=white))
    layout = _map_layout([], view, f"incident-{lon}-{lat}")
    layout["plot_bgcolor"] = "#0e1620"  # the map's own area, apart from the page
    # the legend under the map: on a phone it covered the incident itself
    layout["legend"] |= {"y": -0.02, "yanchor": "top", "font": {"size": 14}}
    return {"data": data, "layout": layout}


BOUNDARY_REACH_DEG = 0.008  # [degrees] about 800 m: a boundary further off would shrink the map


def _district_name(d: District, lang: str) -> str:
    return d.name_en if lang == "en" else d.name_zh


def _nearest_boundary_point(
    district: District, location: tuple[float, float]
) -> tuple[float, float] | None:
    """The vertex of ``district``'s boundary nearest to ``location`` if within reach."""
    scale = math.cos(math.radians(CHENGDU_LAT))
    lon, lat = location
    best, best_d = None, BOUNDARY_REACH_DEG
    for ring in district.rings:
        for x, y in ring:
            d = math.hypot((x - lon) * scale, y - lat)
            if d < best_d:
                best, best_d = (x, y), d
    return best


def build_planner_map_figure(
    districts: Sequence[District],
    features: Sequence[dict[str, Any]],
    polygon: dict[str, Any] | None,
    *,
    lang: str,
) -> dict[str, Any]:
    """The planner's map: districts, the lassoed area (dotted) and the answer's features,
    zoomed to them; the lasso is the drag mode."""
    fig = build_city_map_figure(districts, [], lang=lang, uirevision="planner")
    fig["layout"]["dragmode"] = "lasso"
    if polygon:
        ring = polygon["coordinates"][0]
        area = _lines(
            [p[0] for p in ring], [p[1] for p in ring], t(lang, "planner.area"), "#fadb14", 2
        )
        area["line"]["dash"] = "dot"
        fig["data"].append(area)
    if not features:
        return fig
    xs, ys, px, py = geometry_xy(f.get("geometry") or {} for f in features)
    all_x = [x for x in [*xs, *px] if x is not None]
    all_y = [y for y in [*ys, *py] if y is not None]
    if all_x:  # show the results, not the whole city
        pad = max(0.005, 0.1 * max(max(all_x) - min(all_x), max(all_y) - min(all_y)))
        fig["layout"]["xaxis"]["range"] = [min(all_x) - pad, max(all_x) + pad]
        fig["layout"]["yaxis"]["range"] = [min(all_y) - pad, max(all_y) + pad]
        fig["layout"]["uirevision"] = f"planner-{len(features)}-{all_x[0]}"
    label = t(lang, "planner.results")
    if xs:
        lines = {"type": "scattergl", "x": xs, "y": ys, "mode": "lines", "name": label}
        fig["data"].append(lines | {"line": {"color": "#ff7a45", "width": 3}})
    if px:
        points = _points(px, py, label, color="#ff7a45", size=9)
        fig["data"].append(points | {"type": "scattergl"})
    return fig


# -- charts ------------------------------------------------------------------------------------
def build_trend_figure(
    points: Iterable[tuple[datetime, str, int]],
    *,
    lang: str,
    tz: str,
    font_size: int = FONT["size"],
    max_ticks: int | None = None,
) -> dict[str, Any]:
    """Alerts raised per time bucket, one bar series per utility (plain Plotly JSON);
    ``font_size`` [px] for every label, at most ``max_ticks`` time labels (a wall's large
    labels would otherwise overlap)."""
    series: dict[str, tuple[list[str], list[int]]] = {}
    for ts, utility, n in points:
        xs, ys = series.setdefault(utility, ([], []))
        xs.append(local_time(ts, tz, "%H:%M"))
        ys.append(n)
    data = [
        {
            "type": "bar",
            "x": series[u][0],
            "y": series[u][1],
            "name": t(lang, "utility." + u),
            "marker": {"color": UTILITY_COLOURS[u]},
        }
        for u in ("water", "power", "gas")
        if u in series
    ]
    return {
        "data": data,
        "layout": _layout(
            36 if font_size <= FONT["size"] else 2 * font_size,
            font={**FONT, "size": font_size},
            barmode="stack",
            legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
            xaxis={"gridcolor": GRID, "type": "category", "nticks": max_ticks},
            yaxis={"gridcolor": GRID, "rangemode": "tozero", "nticks": max_ticks},
        ),
    }


def build_readings_figure(
    readings: Sequence[Reading],
    *,
    lang: str,
    tz: str,
    title: str,
    unit: str,
    limits: tuple[float | None, float | None] = (None, None),
    alert_times: Sequence[datetime] = (),
) -> dict[str, Any]:
    """One quantity over time: the line (with a min-max band for rollups), alarm limits as
    dashed lines, and alert times as red markers. Times are shown in ``tz``."""
    zone = ZoneInfo(tz)

    def local(ts: datetime) -> str:
        return ts.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    xs = [local(r.ts) for r in readings]
    values = [r.value for r in readings]
    data: list[dict[str, Any]] = []
    if readings and readings[0].min_value is not None:
        data.append(_band_trace(xs, readings))
    line = {"type": "scatter", "x": xs, "y": values, "mode": "lines", "name": plot_text(title)}
    data.append(line | {"line": {"color": "#36cfc9", "width": 2}})
    if alert_times:
        marker = {"color": "#ff2d55", "size": 14, "symbol": "triangle-down"}
        y = [max(values) if values else 0] * len(alert_times)
        data.append(_points([local(a) for a in alert_times], y, t(lang, "sensor.alerts"), **marker))
    shapes, notes = _limit_marks(limits, t(lang, "sensor.limit"), plot_text(unit))
    return {
        "data": data,
        "layout": _layout(
            48,
            title={"text": f"{plot_text(title)} [{plot_text(unit)}]", "x": 0.01},
            # numeric dates: Plotly's month names are English whatever the page language
            xaxis={
                "type": "date",
                "gridcolor": GRID,
                "tickformat": "%m-%d %H:%M",
                "hoverformat": "%Y-%m-%d %H:%M:%S",
            },
            yaxis={"gridcolor": GRID},
            showlegend=False,
            shapes=shapes,
            annotations=notes,
        ),
    }


def _band_trace(xs: list[str], readings: Sequence[Reading]) -> dict[str, Any]:
    """The min-max band of rollup buckets, drawn under the line."""
    return {
        "type": "scatter",
        "x": xs + xs[::-1],
        "y": [r.max_value for r in readings] + [r.min_value for r in readings][::-1],
        "fill": "toself",
        "fillcolor": "rgba(54,207,201,0.15)",
        "line": {"width": 0},
        "hoverinfo": "skip",
        "showlegend": False,
    }


def _limit_marks(
    limits: tuple[float | None, float | None], label: str, unit: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dashed lines across the chart at the alarm limits, and their labels."""
    shapes, notes = [], []
    for limit in (x for x in limits if x is not None):
        shapes.append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": limit,
                "y1": limit,
                "line": {"color": "#ff4d4f", "dash": "dash", "width": 1.5},
            }
        )
        notes.append(
            {
                "xref": "paper",
                "x": 1,
                "y": limit,
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "text": f"{label} {limit:g} {unit}",
                "font": {"color": "#ff7875"},
            }
        )
    return shapes, notes


def build_bar_figure(
    labels: Sequence[str], values: Sequence[float], *, colour: str
) -> dict[str, Any]:
    """A horizontal bar chart (largest first), for counts by reason."""
    return {
        "data": [
            {
                "type": "bar",
                "x": list(values)[::-1],
                "y": [plot_text(label) for label in labels][::-1],
                "orientation": "h",
                "marker": {"color": colour},
            }
        ],
        "layout": _layout(24, xaxis={"gridcolor": GRID}, yaxis={"automargin": True}),
    }
