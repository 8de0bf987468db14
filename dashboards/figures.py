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
    District,
    DistrictSummary,
    GridCell,
    Reading,
    SensorPoint,
    cell_state,
    district_condition,
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


def build_empty_figure() -> dict[str, Any]:
    """A blank dark figure for a graph that has not received data yet (no white flash)."""
    return {
        "data": [],
        "layout": _layout(8, xaxis={"visible": False}, yaxis={"visible": False}),
    }


def _district_xy(district: District) -> tuple[list[float | None], list[float | None]]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for ring in district.rings:
        xs.extend(p[0] for p in ring)
        ys.extend(p[1] for p in ring)
        xs.append(None)
        ys.append(None)
    return xs, ys


def build_city_map_figure(
    districts: Sequence[District],
    summaries: Sequence[DistrictSummary],
    *,
    lang: str,
    sensors: Sequence[SensorPoint] = (),
    cells: Sequence[GridCell] = (),
    show_districts: bool = True,
    view: tuple[tuple[float, float], tuple[float, float]] | None = None,
    marker_size: int = 11,
    uirevision: str = "map",
    networks: dict[str, tuple[list[float | None], list[float | None]]] | None = None,
    facilities: Sequence[tuple[str, str, str, str, float, float]] = (),
    alarms: Sequence[SensorPoint] = (),
) -> dict[str, Any]:
    """Districts filled by condition, sensors coloured by state (or grid cells by count).

    Returned as plain Plotly JSON (``{"data": [...], "layout": {...}}``), which ``dcc.Graph``
    takes as it is: building ``go`` objects validates every point and cost about 0.3 s per
    5,000 sensors. ``view`` is ((lon0, lon1), (lat0, lat1)) to keep the user's zoom;
    ``uirevision`` keeps it across refreshes.
    """
    data: list[dict[str, Any]] = []
    by_code = {s.adcode: s for s in summaries}
    if show_districts:
        for d in districts:
            xs, ys = _district_xy(d)
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
            data.append(
                {
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
    for utility, (xs, ys) in (networks or {}).items():
        if xs:
            data.append(
                {
                    "type": "scattergl",
                    "x": xs,
                    "y": ys,
                    "mode": "lines",
                    "line": {"color": UTILITY_COLOURS[utility], "width": 1.2},
                    "opacity": 0.7,
                    "name": t(lang, "utility." + utility),
                    "hoverinfo": "skip",
                }
            )
    if facilities:
        data.append(
            {
                "type": "scatter",
                "x": [f[4] for f in facilities],
                "y": [f[5] for f in facilities],
                "mode": "markers",
                "marker": {"symbol": "cross", "size": 11, "color": "#b37feb"},
                "name": t(lang, "map.layer.facilities"),
                "text": [plot_text(f[3] if lang == "en" and f[3] else f[2]) for f in facilities],
                "hoverinfo": "text",
            }
        )
    if cells:
        data.extend(_cell_traces(cells, lang))
    if sensors:
        data.extend(_sensor_traces(sensors, lang, marker_size))
    elif alarms:
        data.extend(_sensor_traces(alarms, lang, marker_size))
    return {"data": data, "layout": _map_layout(districts, view, uirevision)}


def _sensor_traces(
    sensors: Sequence[SensorPoint], lang: str, marker_size: int
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
                    "size": marker_size + (5 if state == "alarm" else 0),
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
    districts: Sequence[District],
    view: tuple[tuple[float, float], tuple[float, float]] | None,
    uirevision: str,
) -> dict[str, Any]:
    if view is None and districts:
        lons = [p[0] for d in districts for r in d.rings for p in r]
        lats = [p[1] for d in districts for r in d.rings for p in r]
        pad = 0.02
        view = ((min(lons) - pad, max(lons) + pad), (min(lats) - pad, max(lats) + pad))
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    return {
        "paper_bgcolor": PAPER,
        "plot_bgcolor": PAPER,
        "font": FONT,
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "hoverlabel": {"font": {"family": FONT["family"], "size": 16}},
        "xaxis": {**axis, "range": list(view[0]) if view else None},
        "yaxis": {
            **axis,
            "range": list(view[1]) if view else None,
            "scaleanchor": "x",
            "scaleratio": 1 / math.cos(math.radians(CHENGDU_LAT)),
        },
        "uirevision": uirevision,
        "legend": {
            "orientation": "h",
            "yanchor": "bottom",
            "y": 0.0,
            "xanchor": "left",
            "x": 0.0,
            "bgcolor": "rgba(13,17,23,0.7)",
            "font": {"size": 16},
        },
        "dragmode": "pan",
    }


def _layout(margin: int, **extra: Any) -> dict[str, Any]:
    return {
        "paper_bgcolor": PAPER,
        "plot_bgcolor": PAPER,
        "font": FONT,
        "margin": {"l": margin, "r": margin, "t": margin, "b": margin},
        "hoverlabel": {"font": {"family": FONT["family"], "size": 16}},
        **extra,
    }


GRID = "#30363d"


def build_trend_figure(
    points: Iterable[tuple[datetime, str, int]], *, lang: str, tz: str
) -> dict[str, Any]:
    """Alerts raised per time bucket, one bar series per utility (plain Plotly JSON)."""
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
            36,
            barmode="stack",
            legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
            xaxis={"gridcolor": GRID, "type": "category"},
            yaxis={"gridcolor": GRID, "rangemode": "tozero"},
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
    data: list[dict[str, Any]] = []
    if readings and readings[0].min_value is not None:
        data.append(
            {
                "type": "scatter",
                "x": xs + xs[::-1],
                "y": [r.max_value for r in readings] + [r.min_value for r in readings][::-1],
                "fill": "toself",
                "fillcolor": "rgba(54,207,201,0.15)",
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    data.append(
        {
            "type": "scatter",
            "x": xs,
            "y": [r.value for r in readings],
            "mode": "lines",
            "line": {"color": "#36cfc9", "width": 2},
            "name": plot_text(title),
        }
    )
    shapes, notes = [], []
    for limit in limits:
        if limit is not None:
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
                    "text": f"{t(lang, 'sensor.limit')} {limit:g} {plot_text(unit)}",
                    "font": {"color": "#ff7875"},
                }
            )
    if alert_times:
        values = [r.value for r in readings]
        y = max(values) if values else 0
        data.append(
            {
                "type": "scatter",
                "x": [local(a) for a in alert_times],
                "y": [y] * len(alert_times),
                "mode": "markers",
                "marker": {"color": "#ff2d55", "size": 14, "symbol": "triangle-down"},
                "name": t(lang, "sensor.alerts"),
            }
        )
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
    span_deg: float = 0.006,
    context: tuple[list[float | None], list[float | None]] | None = None,
) -> dict[str, Any]:
    """A small map around one alert: district outlines, the cut-off and closed-off network
    (``features`` with a ``role`` property, GeoJSON in EPSG:4326), valves to close, facilities
    without supply, and the sensor."""
    lon, lat = location
    xs_all, ys_all = [lon], [lat]
    for f in features:
        geom = f.get("geometry") or {}
        coords = geom.get("coordinates")
        if geom.get("type") == "Point":
            xs_all.append(coords[0])
            ys_all.append(coords[1])
        elif geom.get("type") == "LineString":
            xs_all += [c[0] for c in coords]
            ys_all += [c[1] for c in coords]
    # the sensor and everything the isolation touches, with a margin (at least ``span_deg``)
    half = max(span_deg / 2, 0.6 * (max(xs_all) - min(xs_all)), 0.6 * (max(ys_all) - min(ys_all)))
    cx, cy = (max(xs_all) + min(xs_all)) / 2, (max(ys_all) + min(ys_all)) / 2
    fig = build_city_map_figure(
        districts,
        [],
        lang=lang,
        view=((cx - half * 1.6, cx + half * 1.6), (cy - half, cy + half)),
        uirevision=f"incident-{lon}-{lat}",
    )
    if context and context[0]:  # the surrounding network, for orientation
        fig["data"].append(
            {
                "type": "scatter",
                "x": context[0],
                "y": context[1],
                "mode": "lines",
                "line": {"color": "#5b7290", "width": 1.5},
                "name": t(lang, "incident.network"),
                "hoverinfo": "skip",
            }
        )
    fig["data"].append(
        {
            "type": "scatter",
            "x": [lon],
            "y": [lat],
            "mode": "markers",
            "name": t(lang, "incident.sensor"),
            "marker": {
                "color": "#ff2d55",
                "size": 14,
                "symbol": "diamond",
                "line": {"color": "#ffffff", "width": 2},
            },
        }
    )
    for role, (colour, size, key) in IMPACT_STYLE.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        px: list[float] = []
        py: list[float] = []
        for f in features:
            if (f.get("properties") or {}).get("role") != role:
                continue
            geom = f.get("geometry") or {}
            if geom.get("type") == "Point":
                px.append(geom["coordinates"][0])
                py.append(geom["coordinates"][1])
            elif geom.get("type") == "LineString":
                xs += [c[0] for c in geom["coordinates"]] + [None]
                ys += [c[1] for c in geom["coordinates"]] + [None]
        if xs:
            fig["data"].append(
                {
                    "type": "scatter",
                    "x": xs,
                    "y": ys,
                    "mode": "lines",
                    "name": t(lang, key),
                    "line": {"color": colour, "width": size},
                    "hoverinfo": "skip",
                }
            )
        if px:
            fig["data"].append(
                {
                    "type": "scatter",
                    "x": px,
                    "y": py,
                    "mode": "markers",
                    "name": t(lang, key),
                    "marker": {
                        "color": colour,
                        "size": size,
                        "symbol": "x" if role == "valve_to_close" else "cross",
                    },
                }
            )
    return fig
