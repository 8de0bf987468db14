"""Sensor detail: readings of each quantity over a chosen window (raw when short, rollups when
long), alarm limits, the sensor's alerts marked on the chart, and its data-trust figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    TRUST_HEAD,
    alerts_table,
    catalogue_label,
    data_table,
    db_down_banner,
    panel,
    plot_config,
    updated_banner,
)
from dashboards.context import AppContext
from dashboards.figures import build_readings_figure
from dashboards.i18n import dropdown_labels, t
from dashboards.model import (
    AlertRow,
    Reading,
    choose_readings_source,
    display_text,
    percent,
    window_bounds,
)
from sensors.quantities import QUANTITIES

PATH = "/sensor"
NAV_KEY = "nav.sensor"
WINDOWS = ("1h", "6h", "24h", "7d", "30d")
MAX_POINTS = 1500  # per chart; longer raw windows are averaged into buckets on the server


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page sensor-page",
        children=[
            html.Div(id="sensor-banner"),
            html.Div(
                className="form-row",
                children=[
                    html.Span(t(lang, "sensor.pick"), className="kpi-label"),
                    dcc.Dropdown(
                        id="sensor-pick",
                        placeholder=t(lang, "sensor.none"),
                        searchable=True,
                        labels=dropdown_labels(lang),
                        style={"width": "34rem"},
                    ),
                    html.Span(t(lang, "sensor.window"), className="kpi-label"),
                    dcc.RadioItems(
                        id="sensor-window",
                        options=[
                            {"label": t(lang, f"sensor.window.{w}"), "value": w} for w in WINDOWS
                        ],
                        value="24h",
                        inline=True,
                        inputStyle={"marginRight": "0.3rem", "marginLeft": "0.8rem"},
                    ),
                ],
            ),
            html.Div(id="sensor-info", className="sensor-info"),
            html.Div(id="sensor-charts"),
            html.Div(
                className="two-col",
                children=[
                    panel(t(lang, "trust.title"), html.Div(id="sensor-trust")),
                    panel(t(lang, "sensor.alerts"), html.Div(id="sensor-alerts")),
                ],
            ),
        ],
    )


def options(ctx: AppContext, search, url_search, current):
    """The picker's sensors matching what is typed; the one in the URL (``?id=``) chosen."""
    wanted = parse_qs((url_search or "").lstrip("?")).get("id", [None])[0]
    value = current or wanted
    try:
        with ctx.reader.connection() as conn:
            found = queries.fetch_sensor_options(conn, search=(search or "")[:64], limit=100)
            if value and value not in {sid for sid, _ in found}:
                found = queries.fetch_sensor_options(conn, search=value, limit=1) + found
    except queries.DatabaseUnavailable:
        return no_update, no_update
    opts = [{"label": f"{display_text(name)} ({sid})", "value": sid} for sid, name in found]
    return opts, value if value != current else no_update


@dataclass(frozen=True)
class SensorView:
    info: dict[str, Any]  # queries.fetch_sensor_info
    source: str  # raw, 1m or 1h
    series: dict[str, list[Reading]]  # per quantity
    alerts: list[AlertRow]
    trust: list[dict[str, Any]]


def read_sensor(conn, sensor_id: str, start: datetime, end: datetime) -> SensorView | None:
    """One sensor's readings of every quantity in [start, end), its alerts and data trust;
    None for an unknown sensor."""
    info = queries.fetch_sensor_info(conn, sensor_id)
    if info is None:
        return None
    span_s = (end - start).total_seconds()
    source = choose_readings_source(span_s)
    bucket_s = 0
    if source == "raw" and span_s / info["expected_interval_s"] > MAX_POINTS:
        bucket_s = max(60, int(span_s / MAX_POINTS // 60 * 60))
    series = {
        q: queries.fetch_readings(conn, sensor_id, q, start, end, source=source, bucket_s=bucket_s)
        for q in sorted(info["limits"])
    }
    alerts = queries.fetch_open_alerts(
        conn, sensor_id=sensor_id, include_closed=True, shelved=None, limit=50
    )
    trust = queries.fetch_sensor_trust(conn, sensor_id, start)
    return SensorView(info, source, series, alerts, trust)


def show(ctx: AppContext, sensor_id, window, lang):
    """The chosen sensor over the chosen window."""
    lang = ctx.lang(lang)
    if not sensor_id:
        return html.Div(t(lang, "sensor.none"), className="empty"), [], [], [], []
    now = ctx.clock()
    start, end = window_bounds(now, window or "24h")
    try:
        with ctx.reader.connection() as conn:
            view = read_sensor(conn, sensor_id, start, end)
    except queries.DatabaseUnavailable:
        return no_update, no_update, no_update, no_update, db_down_banner(lang)
    if view is None:
        return html.Div(t(lang, "page.not_found"), className="empty"), [], [], [], []
    return (
        sensor_head(lang, view.info, view.source),
        [chart(lang, ctx.tz, view, q, start, end) for q in view.series],
        trust_table(lang, view.trust),
        alerts_table(lang, view.alerts, tz=ctx.tz, now=now),
        updated_banner(lang, now, ctx.tz),
    )


def sensor_head(lang: str, info: dict[str, Any], source: str) -> html.Div:
    district = info["district_en"] if lang == "en" else info["district_zh"]
    title = t(
        lang,
        "sensor.info",
        name=display_text(info["name"]),
        id=info["sensor_id"],
        type=info["type_en"] if lang == "en" else info["type_zh"],
        district=display_text(district or "—"),
    )
    source_note = t(lang, "sensor.source", source=t(lang, f"sensor.source.{source}"))
    return html.Div(
        [
            html.H2(title, id="sensor-title"),
            html.Div(source_note, className="note", id="sensor-source"),
        ]
    )


def chart(
    lang: str, tz: str, view: SensorView, q: str, start: datetime, end: datetime
) -> html.Section:
    """One quantity's chart with its limits and the alerts raised in the window."""
    readings = view.series[q]
    body: html.Div | dcc.Graph
    if not readings:
        body = html.Div(t(lang, "sensor.no_readings"), className="empty")
    else:
        figure = build_readings_figure(
            readings,
            lang=lang,
            tz=tz,
            title=catalogue_label(lang, "quantity.", q),
            unit=QUANTITIES[q].unit if q in QUANTITIES else "",
            limits=view.info["limits"].get(q, (None, None)),
            alert_times=[
                a.raised_at for a in view.alerts if a.quantity == q and start <= a.raised_at < end
            ],
        )
        body = dcc.Graph(
            figure=figure, config=plot_config(lang, displayModeBar=False), style={"height": "22rem"}
        )
    return html.Section(body, className="panel chart-panel", **{"data-quantity": q})


def trust_table(lang: str, rows: list[dict]) -> html.Table | html.Div:
    if not rows:
        return html.Div("—", className="empty")
    head = ["col.quantity", *TRUST_HEAD]
    counts = ("expected", "received", "seq_gaps", "late", "duplicates")
    body = [
        html.Tr(
            [
                html.Td(catalogue_label(lang, "quantity.", r["quantity"])),
                html.Td(percent(r["completeness"]), className="num"),
                *(html.Td(str(r[k]), className="num") for k in counts),
            ]
        )
        for r in rows
    ]
    return data_table([t(lang, k) for k in head], body, "trust-table")


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("sensor-pick", "options"),
        Output("sensor-pick", "value"),
        Input("sensor-pick", "search_value"),
        State("url", "search"),
        State("sensor-pick", "value"),
    )(partial(options, ctx))
    app.callback(
        Output("sensor-info", "children"),
        Output("sensor-charts", "children"),
        Output("sensor-trust", "children"),
        Output("sensor-alerts", "children"),
        Output("sensor-banner", "children"),
        Input("sensor-pick", "value"),
        Input("sensor-window", "value"),
        State("lang", "data"),
    )(partial(show, ctx))
