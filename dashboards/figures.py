"""Pure Plotly figure builders: values in, ``go.Figure`` out. No database, no Dash.

Maps are drawn on cartesian axes in lon/lat [degrees] with the y axis scaled by 1/cos(latitude),
so the city keeps its shape without any tile server or glyph download (the government network
has no internet). All text from sensors goes through ``plot_text``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

import plotly.graph_objects as go

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


def _base_layout(fig: go.Figure, *, margin: int = 8) -> go.Figure:
    fig.update_layout(
        paper_bgcolor=PAPER,
        plot_bgcolor=PAPER,
        font=FONT,
        margin=dict(l=margin, r=margin, t=margin, b=margin),
        hoverlabel=dict(font=dict(family=FONT["family"], size=16)),
    )
    return fig


def build_empty_figure() -> go.Figure:
    """A blank dark figure for a graph that has not received data yet (no white flash)."""
    fig = go.Figure()
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig)


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
) -> go.Figure:
    """Districts filled by condition, sensors coloured by state (or grid cells by count).

    ``view`` is ((lon0, lon1), (lat0, lat1)) to keep the user's zoom; ``uirevision`` keeps it
    across refreshes.
    """
    fig = go.Figure()
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
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    fill="toself",
                    fillcolor=DISTRICT_FILL[condition],
                    line=dict(
                        color="#ff2d55" if condition == "critical" else "#5b7290",
                        width=3 if condition in ("critical", "alarm") else 1.2,
                    ),
                    hoverinfo="text",
                    hoveron="fills",
                    text=hover,
                    name=plot_text(name),
                    showlegend=False,
                )
            )
    for utility, (xs, ys) in (networks or {}).items():
        if xs:
            fig.add_trace(
                go.Scattergl(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line=dict(color=UTILITY_COLOURS[utility], width=1.2),
                    opacity=0.7,
                    name=t(lang, "utility." + utility),
                    hoverinfo="skip",
                )
            )
    if facilities:
        fig.add_trace(
            go.Scatter(
                x=[f[4] for f in facilities],
                y=[f[5] for f in facilities],
                mode="markers",
                marker=dict(symbol="cross", size=11, color="#b37feb", line=dict(width=0)),
                name=t(lang, "map.layer.facilities"),
                text=[plot_text(f[3] if lang == "en" and f[3] else f[2]) for f in facilities],
                hoverinfo="text",
            )
        )
    if cells:
        _add_cells(fig, cells, lang)
    if sensors:
        _add_sensors(fig, sensors, lang, marker_size)
    elif alarms:
        _add_sensors(fig, alarms, lang, marker_size)
    _map_axes(fig, districts, view, uirevision)
    fig.update_layout(
        legend=dict(
            orientation="h",
            yanchor="bottom",
            y=0.0,
            xanchor="left",
            x=0.0,
            bgcolor="rgba(13,17,23,0.7)",
            font=dict(size=16),
        ),
        dragmode="pan",
    )
    return _base_layout(fig)


def _add_sensors(
    fig: go.Figure, sensors: Sequence[SensorPoint], lang: str, marker_size: int
) -> None:
    trace = go.Scattergl if len(sensors) >= WEBGL_FROM else go.Scatter
    for state in SENSOR_STATES[::-1]:  # alarms drawn last, on top
        pts = [s for s in sensors if s.state == state]
        if not pts:
            continue
        fig.add_trace(
            trace(
                x=[p.lon for p in pts],
                y=[p.lat for p in pts],
                mode="markers",
                marker=dict(
                    color=STATE_COLOURS[state],
                    size=marker_size + (5 if state == "alarm" else 0),
                    line=dict(color="#0d1117", width=1),
                    symbol="circle" if state != "alarm" else "diamond",
                ),
                name=f"{t(lang, 'state.' + state)} ({len(pts)})",
                customdata=[p.sensor_id for p in pts],
                text=[
                    f"{plot_text(p.name)}<br>{plot_text(p.sensor_id)}<br>"
                    f"{t(lang, 'utility.' + p.utility)} · {t(lang, 'state.' + state)}"
                    for p in pts
                ],
                hoverinfo="text",
            )
        )


def _add_cells(fig: go.Figure, cells: Sequence[GridCell], lang: str) -> None:
    """Grid cells as squares sized by sensor count and coloured by ``cell_state``."""
    biggest = max(c.sensors for c in cells)
    groups: dict[str, list[GridCell]] = {s: [] for s in SENSOR_STATES}
    for c in cells:
        groups[cell_state(c)].append(c)
    for state in SENSOR_STATES[::-1]:
        group = groups[state]
        if not group:
            continue
        fig.add_trace(
            go.Scattergl(
                x=[c.lon for c in group],
                y=[c.lat for c in group],
                mode="markers",
                marker=dict(
                    color=STATE_COLOURS[state],
                    symbol="square",
                    size=[6 + 14 * math.sqrt(c.sensors / biggest) for c in group],
                    opacity=0.8,
                ),
                name=t(lang, "map.cells", state=t(lang, "state." + state), n=len(group)),
                text=[
                    f"{t(lang, 'col.sensors')}: {c.sensors}<br>{t(lang, 'state.alarm')}: {c.alarm}"
                    f"<br>{t(lang, 'state.silent')}: {c.silent}<br>"
                    f"{t(lang, 'state.nodata')}: {c.nodata}"
                    for c in group
                ],
                hoverinfo="text",
            )
        )


def _map_axes(
    fig: go.Figure,
    districts: Sequence[District],
    view: tuple[tuple[float, float], tuple[float, float]] | None,
    uirevision: str,
) -> None:
    if view is None and districts:
        lons = [p[0] for d in districts for r in d.rings for p in r]
        lats = [p[1] for d in districts for r in d.rings for p in r]
        pad = 0.02
        view = ((min(lons) - pad, max(lons) + pad), (min(lats) - pad, max(lats) + pad))
    axis = dict(visible=False, showgrid=False, zeroline=False)
    fig.update_xaxes(**axis, range=list(view[0]) if view else None)
    fig.update_yaxes(
        **axis,
        range=list(view[1]) if view else None,
        scaleanchor="x",
        scaleratio=1 / math.cos(math.radians(CHENGDU_LAT)),
    )
    fig.update_layout(uirevision=uirevision)


def build_trend_figure(
    points: Iterable[tuple[datetime, str, int]], *, lang: str, tz: str
) -> go.Figure:
    """Alerts raised per time bucket, one bar series per utility."""
    series: dict[str, tuple[list[str], list[int]]] = {}
    for ts, utility, n in points:
        xs, ys = series.setdefault(utility, ([], []))
        xs.append(local_time(ts, tz, "%H:%M"))
        ys.append(n)
    fig = go.Figure()
    for utility in ("water", "power", "gas"):
        if utility in series:
            xs, ys = series[utility]
            fig.add_trace(
                go.Bar(
                    x=xs,
                    y=ys,
                    name=t(lang, "utility." + utility),
                    marker_color=UTILITY_COLOURS[utility],
                )
            )
    fig.update_layout(
        barmode="stack",
        legend=dict(orientation="h", y=1.15, x=0),
        xaxis=dict(gridcolor="#30363d", type="category"),
        yaxis=dict(gridcolor="#30363d", rangemode="tozero"),
    )
    return _base_layout(fig, margin=36)


def build_readings_figure(
    readings: Sequence[Reading],
    *,
    lang: str,
    tz: str,
    title: str,
    unit: str,
    limits: tuple[float | None, float | None] = (None, None),
    alert_times: Sequence[datetime] = (),
) -> go.Figure:
    """One quantity over time: the line (with a min-max band for rollups), alarm limits as
    dashed lines, and alert times as red markers."""
    fig = go.Figure()
    xs = [r.ts.astimezone(_tz(tz)) for r in readings]
    if readings and readings[0].min_value is not None:
        fig.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=[r.max_value for r in readings] + [r.min_value for r in readings][::-1],
                fill="toself",
                fillcolor="rgba(54,207,201,0.15)",
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[r.value for r in readings],
            mode="lines",
            line=dict(color="#36cfc9", width=2),
            name=plot_text(title),
        )
    )
    for limit in limits:
        if limit is not None:
            fig.add_hline(
                y=limit,
                line=dict(color="#ff4d4f", dash="dash", width=1.5),
                annotation_text=f"{t(lang, 'sensor.limit')} {limit:g} {unit}",
                annotation_font_color="#ff7875",
            )
    if alert_times:
        values = [r.value for r in readings]
        y = max(values) if values else 0
        fig.add_trace(
            go.Scatter(
                x=[a.astimezone(_tz(tz)) for a in alert_times],
                y=[y] * len(alert_times),
                mode="markers",
                marker=dict(color="#ff2d55", size=14, symbol="triangle-down"),
                name=t(lang, "sensor.alerts"),
            )
        )
    fig.update_layout(
        title=dict(text=f"{plot_text(title)} [{plot_text(unit)}]", x=0.01),
        # numeric dates: Plotly's month names are English whatever the page language
        xaxis=dict(gridcolor="#30363d", tickformat="%m-%d %H:%M", hoverformat="%Y-%m-%d %H:%M:%S"),
        yaxis=dict(gridcolor="#30363d"),
        showlegend=False,
    )
    return _base_layout(fig, margin=48)


def build_bar_figure(labels: Sequence[str], values: Sequence[float], *, colour: str) -> go.Figure:
    """A horizontal bar chart (largest first), for counts by reason."""
    fig = go.Figure(
        go.Bar(
            x=list(values)[::-1],
            y=[plot_text(label) for label in labels][::-1],
            orientation="h",
            marker_color=colour,
        )
    )
    fig.update_layout(xaxis=dict(gridcolor="#30363d"), yaxis=dict(automargin=True))
    return _base_layout(fig, margin=24)


def _tz(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
