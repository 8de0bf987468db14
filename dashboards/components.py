"""Layout pieces shared by the pages (header, banner, tables). Pure: values in, components out.

Strings from sensors and users go in as component children, which React renders as text (no
HTML), after ``display_text`` has removed ``$`` and invisible characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dash import dcc, html

from dashboards.i18n import MESSAGES, t
from dashboards.model import (
    SEVERITY_COLOURS,
    STATE_COLOURS,
    AlertRow,
    DistrictSummary,
    age_parts,
    display_text,
    district_condition,
    local_time,
    time_left_parts,
)

NAV = (
    ("/", "nav.overview"),
    ("/wall", "nav.wall"),
    ("/map", "nav.map"),
    ("/sensor", "nav.sensor"),
    ("/alerts", "nav.alerts"),
    ("/trust", "nav.trust"),
    ("/planner", "nav.planner"),
)


def header(lang: str, path: str, user: str | None = None) -> html.Header:
    links = [
        dcc.Link(
            t(lang, key),
            href=href,
            className="nav-link active" if path == href else "nav-link",
        )
        for href, key in NAV
    ]
    account = (
        html.A(
            f"{display_text(user)} · {t(lang, 'nav.logout')}", href="/logout", className="nav-link"
        )
        if user
        else html.A(t(lang, "nav.login"), href="/login", className="nav-link")
    )
    return html.Header(
        className="app-header",
        children=[
            html.Div(
                [
                    html.H1(t(lang, "app.title"), className="app-title"),
                    html.Span(t(lang, "app.subtitle"), className="app-subtitle"),
                ],
                className="brand",
            ),
            html.Nav([*links, account], className="nav"),
        ],
    )


def banner(lang: str, error: str | None, updated: datetime | None, tz: str) -> list:
    """The page banner: a red database warning, or a quiet 'updated at' line."""
    if error:
        return [html.Div(t(lang, "banner.db_down"), className="banner banner-error", role="alert")]
    if updated:
        return [
            html.Div(
                t(lang, "banner.updated", time=local_time(updated, tz, "%H:%M:%S")),
                className="banner banner-ok",
            )
        ]
    return []


def severity_badge(lang: str, severity: str) -> html.Span:
    return html.Span(
        t(lang, "severity." + severity) if severity in SEVERITY_COLOURS else display_text(severity),
        className=f"badge sev-{severity}",
    )


def district_table(lang: str, summaries: Sequence[DistrictSummary]) -> html.Table:
    """All districts by name with sensor, alarm, silent and open-alert counts."""
    rows = []
    for s in summaries:
        condition = district_condition(s)
        rows.append(
            html.Tr(
                [
                    html.Td(
                        [
                            html.Span(className=f"dot cond-{condition}"),
                            display_text(s.name_en if lang == "en" else s.name_zh),
                        ],
                        className="district-name",
                    ),
                    html.Td(str(s.sensors), className="num"),
                    html.Td(str(s.open_alerts), className="num alarm" if s.open_alerts else "num"),
                    html.Td(str(s.silent), className="num silent" if s.silent else "num"),
                ],
                className=f"row-{condition}",
                **{"data-adcode": str(s.adcode)},
            )
        )
    return html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th(t(lang, "col.district")),
                        html.Th(t(lang, "col.sensors"), className="num"),
                        html.Th(t(lang, "col.alerts"), className="num"),
                        html.Th(t(lang, "col.silent"), className="num"),
                    ]
                )
            ),
            html.Tbody(rows),
        ],
        className="data-table district-table",
    )


def alerts_table(
    lang: str,
    alerts: Sequence[AlertRow],
    *,
    tz: str,
    now: datetime,
    selectable: bool = False,
    table_id: str = "",
) -> html.Div:
    """Open alerts: time (Asia/Shanghai), severity, sensor, district, message, age."""
    if not alerts:
        return html.Div(t(lang, "overview.no_alerts"), className="empty")
    rows = []
    for a in alerts:
        unit, n = age_parts(now, a.raised_at)
        cells = [
            html.Td(local_time(a.raised_at, tz, "%m-%d %H:%M:%S"), className="time"),
            html.Td(severity_badge(lang, a.severity)),
            html.Td(
                [
                    html.Div(display_text(a.sensor_name), className="sensor-name"),
                    html.Div(display_text(a.sensor_id), className="sensor-id"),
                ]
            ),
            html.Td(display_text(a.district(lang))),
            html.Td(display_text(a.message(lang)), className="message"),
            html.Td(t(lang, unit, n=n), className="num"),
        ]
        if selectable:
            known = f"astate.{a.state}" in MESSAGES["zh"]
            cells.append(html.Td(t(lang, f"astate.{a.state}") if known else display_text(a.state)))
            cells.append(html.Td(display_text(a.assignee or "—")))
        attrs = {"data-alert-id": str(a.alert_id)}
        if selectable:
            cells.insert(
                0,
                html.Td(
                    html.Button(
                        f"#{a.alert_id}",
                        id={"type": f"{table_id}-pick", "alert": a.alert_id},
                        className="pick",
                    )
                ),
            )
        rows.append(html.Tr(cells, className=f"alert-row sev-row-{a.severity}", **attrs))
    head = [
        t(lang, "col.time"),
        t(lang, "col.severity"),
        t(lang, "col.sensor"),
        t(lang, "col.district"),
        t(lang, "col.message"),
        t(lang, "col.age"),
    ]
    if selectable:
        head = ["#", *head, t(lang, "col.state"), t(lang, "col.assignee")]
    return html.Div(
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
            className="data-table alerts-table",
        ),
        className="table-scroll",
    )


def shelved_table(
    lang: str, alerts: Sequence[AlertRow], *, tz: str, now: datetime, table_id: str
) -> html.Div:
    """Shelved alerts: until when (and how long from now), by whom, why; selectable, so that
    an alert can be unshelved or acted on. They are not in the open-alerts lists and counts."""
    if not alerts:
        return html.Div(t(lang, "alerts.no_shelved"), className="empty", id=f"{table_id}-none")
    rows = []
    for a in alerts:
        unit, n = time_left_parts(now, a.shelved_until or now)
        rows.append(
            html.Tr(
                [
                    html.Td(
                        html.Button(
                            f"#{a.alert_id}",
                            id={"type": f"{table_id}-pick", "alert": a.alert_id},
                            className="pick",
                        )
                    ),
                    html.Td(severity_badge(lang, a.severity)),
                    html.Td(
                        [
                            html.Div(display_text(a.sensor_name), className="sensor-name"),
                            html.Div(display_text(a.sensor_id), className="sensor-id"),
                        ]
                    ),
                    html.Td(display_text(a.district(lang))),
                    html.Td(display_text(a.message(lang)), className="message"),
                    html.Td(
                        [
                            html.Div(
                                local_time(a.shelved_until, tz, "%m-%d %H:%M"),
                                className="shelved-until",
                            ),
                            html.Div(
                                t(lang, "alerts.expires_in", left=t(lang, unit, n=n)),
                                className="note",
                            ),
                        ]
                    ),
                    html.Td(display_text(a.shelved_by or "—")),
                    html.Td(display_text(a.shelve_reason or "—"), className="shelve-reason"),
                ],
                className="alert-row shelved-row",
                **{"data-alert-id": str(a.alert_id)},
            )
        )
    head = [
        "#",
        t(lang, "col.severity"),
        t(lang, "col.sensor"),
        t(lang, "col.district"),
        t(lang, "col.message"),
        t(lang, "col.shelved_until"),
        t(lang, "col.shelved_by"),
        t(lang, "col.reason"),
    ]
    return html.Div(
        html.Table(
            [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
            className="data-table alerts-table shelved-table",
        ),
        className="table-scroll",
    )


def state_legend(lang: str) -> html.Div:
    return html.Div(
        [
            html.Span(
                [html.Span(className="dot", style={"background": colour}), t(lang, "state." + s)],
                className="legend-item",
            )
            for s, colour in STATE_COLOURS.items()
        ],
        className="legend",
    )
