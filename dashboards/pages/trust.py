"""Data trust: completeness, gaps, late and duplicate readings per utility and district,
quarantined messages by reason, the newest quarantined messages and the sensors not reporting.

Completeness and the other per-reading figures are ``data_trust``'s (decision 0016); the
sensors not reporting are counted and listed from the sensor-state snapshot, the same rule as
the wall's and the overview's online and silent figures (``queries._SENSOR_STATE_SQL``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    TRUST_HEAD,
    catalogue_label,
    data_table,
    db_down_banner,
    empty_graph,
    panel,
    plot_config,
    source_loss_banner,
    updated_banner,
)
from dashboards.context import AppContext, read_city
from dashboards.figures import build_bar_figure, build_empty_figure
from dashboards.i18n import t
from dashboards.model import SensorPoint, SourceLossView, display_text, local_time, percent
from dashboards.snapshot import not_reporting_by

PATH = "/trust"
NAV_KEY = "nav.trust"
TRUST_TTL_S = queries.TRUST_CACHE_TTL_S


def layout(ctx: AppContext, lang: str) -> html.Div:
    tall = {"maxHeight": "34rem"}
    reasons = empty_graph(
        "trust-reasons", plot_config(lang, displayModeBar=False), style={"height": "16rem"}
    )
    return html.Div(
        className="page trust-page",
        children=[
            dcc.Interval(id="trust-tick", interval=max(ctx.settings.dashboard_refresh_ms, 15_000)),
            html.Div(id="trust-banner"),
            html.Div(id="trust-losses"),
            html.Div(
                className="two-col",
                children=[
                    panel(t(lang, "trust.by_utility"), html.Div(id="trust-utility")),
                    panel(t(lang, "trust.quarantine"), reasons),
                    panel(
                        t(lang, "trust.by_district"),
                        html.Div(id="trust-district", className="table-scroll"),
                        style=tall,
                    ),
                    panel(
                        t(lang, "trust.recent"),
                        html.Div(id="trust-recent", className="table-scroll"),
                        html.H2(t(lang, "trust.silent")),
                        html.Div(id="trust-silent", className="table-scroll"),
                        style=tall,
                    ),
                ],
            ),
        ],
    )


def group_table(lang: str, rows: list[tuple], label: Callable[[str], str]) -> html.Table | html.Div:
    """Per group (utility or district): completeness and counts of the data-trust figures."""
    if not rows:
        return html.Div("—", className="empty")
    head = ["trust.group", *TRUST_HEAD, "trust.not_reporting"]
    body = []
    for g, expected, received, gaps, dups, late, silent, completeness in rows:
        cls = "num" if completeness is None or completeness >= 0.98 else "num silent"
        cells = [
            html.Td(label(g)),
            html.Td(percent(completeness), className=cls),
            *(
                html.Td(f"{n or 0:,}", className="num")
                for n in (expected, received, gaps, late, dups)
            ),
            html.Td(f"{silent or 0:,}", className="num silent" if silent else "num"),
        ]
        body.append(html.Tr(cells, **{"data-group": str(g)}))
    return data_table([t(lang, k) for k in head], body, "trust-table")


def quarantine_table(lang: str, tz: str, recent: list[tuple]) -> html.Table | html.Div:
    """The newest quarantined messages: time, reason, sensor, topic (the detail on hover)."""
    if not recent:
        return html.Div(t(lang, "trust.quarantine_none"), className="empty")
    rows = [
        html.Tr(
            [
                html.Td(local_time(at, tz, "%m-%d %H:%M:%S"), className="time"),
                html.Td(display_text(reason)),
                html.Td(display_text(sensor or "—")),
                html.Td(display_text(topic), className="sensor-id"),
            ],
            title=display_text(detail),
        )
        for at, reason, topic, sensor, detail in recent
    ]
    head = [t(lang, "col.time"), t(lang, "col.reason"), t(lang, "col.sensor"), "topic"]
    return data_table(head, rows, "quarantine-table")


def silent_list(lang: str, tz: str, silent: list[SensorPoint]) -> html.Ul:
    """Every sensor not reporting (the count in the tables above), quiet longest first."""
    return html.Ul(
        [
            html.Li(
                f"{display_text(p.name)} ({p.sensor_id}) · {t(lang, 'state.' + p.state)} · "
                f"{local_time(p.last_ts, tz, '%m-%d %H:%M')}",
                **{"data-sensor": p.sensor_id, "data-state": p.state},
            )
            for p in silent
        ],
        className="timeline",
    )


def district_label(lang: str, english_names: dict[str, str], name_zh: str) -> str:
    """A district's name in the page's language (the rows are grouped by the Chinese one)."""
    return display_text(english_names.get(name_zh, name_zh) if lang == "en" else name_zh)


def with_not_reporting(rows: list[tuple], counts: dict) -> list[tuple]:
    """The data-trust rows with their silent column replaced by the snapshot's count of
    sensors not reporting in the group (0 where none)."""
    return [(*r[:6], counts.get(r[0], 0), r[7]) for r in rows]


@dataclass(frozen=True)
class TrustData:
    by_utility: list[tuple]
    by_district: list[tuple]
    reasons: list[tuple]  # (reason, count, newest) over 24 h
    recent: list[tuple]  # the newest quarantined messages
    silent: list[SensorPoint]
    losses: list[SourceLossView]
    english_names: dict[str, str]  # a district's Chinese name -> its English one


def read_trust(ctx: AppContext, conn, now) -> TrustData:
    since = queries.trust_since(now)

    def by(group: str) -> list[tuple]:
        if group == "utility":  # the wall reads the same cached rows (decision 0016)
            return queries.cached_trust_by_utility(ctx.cache, ctx.reader, conn, now)
        return ctx.cache.get(
            f"trust-{group}",
            TRUST_TTL_S,
            lambda: queries.fetch_trust_by_group(conn, since=since, by=group),
        )

    city = read_city(ctx, conn)  # the wall's own snapshot: one definition of silent
    district_names = {d.adcode: d.name_zh for d in city.districts}
    per_district: dict[str, int] = {}
    for adcode, n in not_reporting_by(city.states, "district").items():
        name = district_names.get(int(adcode), "—")
        per_district[name] = per_district.get(name, 0) + n
    return TrustData(
        by_utility=with_not_reporting(by("utility"), not_reporting_by(city.states, "utility")),
        by_district=with_not_reporting(by("district"), per_district),
        reasons=queries.fetch_quarantine_by_reason(conn, hours=24),
        recent=queries.fetch_recent_quarantine(conn, limit=15),
        silent=queries.fetch_silent_sensors(conn),
        losses=queries.fetch_source_losses(conn),
        english_names={d.name_zh: d.name_en for d in city.districts if d.name_en},
    )


def refresh(ctx: AppContext, _n, lang):
    """The last hour's data trust, the last day's quarantine and the silent sensors."""
    lang = ctx.lang(lang)
    now = ctx.clock()
    try:
        with ctx.reader.connection() as conn:
            data = read_trust(ctx, conn, now)
    except queries.DatabaseUnavailable:
        return (*([no_update] * 5), db_down_banner(lang), no_update)
    reasons = data.reasons
    figure = (
        build_bar_figure([r[0] for r in reasons], [r[1] for r in reasons], colour="#f5a623")
        if reasons
        else build_empty_figure()
    )
    return (
        group_table(lang, data.by_utility, partial(catalogue_label, lang, "utility.")),
        group_table(lang, data.by_district, partial(district_label, lang, data.english_names)),
        figure,
        quarantine_table(lang, ctx.tz, data.recent),
        silent_list(lang, ctx.tz, data.silent),
        updated_banner(lang, now, ctx.tz),
        source_loss_banner(lang, data.losses, ctx.tz),
    )


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("trust-utility", "children"),
        Output("trust-district", "children"),
        Output("trust-reasons", "figure"),
        Output("trust-recent", "children"),
        Output("trust-silent", "children"),
        Output("trust-banner", "children"),
        Output("trust-losses", "children"),
        Input("trust-tick", "n_intervals"),
        State("lang", "data"),
    )(partial(refresh, ctx))
