"""Layout pieces shared by the pages (header, panels, banners, tables). Pure: values in,
components out.

Strings from sensors and users go in as component children, which React renders as text (no
HTML), after ``display_text`` has removed ``$`` and invisible characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dash import dcc, html

from dashboards.figures import build_empty_figure
from dashboards.i18n import MESSAGES, t
from dashboards.model import (
    AlertRow,
    DistrictSummary,
    SourceLossView,
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


def header(
    lang: str,
    path: str,
    user: str | None = None,
    *,
    csrf: str = "",
    admin: bool = False,
    login_href: str = "/login",
) -> html.Header:
    """The title and navigation; the account: for a signed-in user a logout button (a POST
    with the anti-forgery token ``csrf``, like every change), else a login link that comes back
    here (``login_href``); for an admin the admin page's link."""
    nav = [*NAV, ("/admin", "nav.admin")] if admin else NAV
    links = [
        dcc.Link(
            t(lang, key),
            href=href,
            className="nav-link active" if path == href else "nav-link",
        )
        for href, key in nav
    ]
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
            html.Nav(
                [
                    *links,
                    html.Div(
                        account(lang, user, csrf=csrf, login_href=login_href),
                        id="header-account",
                        className="header-account",
                    ),
                ],
                className="nav",
            ),
        ],
    )


def account(lang: str, user: str | None, *, csrf: str, login_href: str) -> html.Form | html.A:
    """The header's account: who is signed in and the logout button, or the login link."""
    if not user:
        return html.A(t(lang, "nav.login"), href=login_href, className="nav-link", id="login-link")
    return html.Form(
        [
            dcc.Input(type="hidden", name="csrf", value=csrf, id="logout-csrf"),
            html.Button(
                f"{display_text(user)} · {t(lang, 'nav.logout')}",
                type="submit",
                id="logout-button",
                className="nav-link nav-button",
            ),
        ],
        method="post",
        action=f"/logout?lang={lang}",
        className="nav-form",
    )


def catalogue_label(lang: str, prefix: str, value: str) -> str:
    """The catalogue's label for a known value (``prefix`` + value), else the value as text."""
    key = prefix + value
    return t(lang, key) if key in MESSAGES["zh"] else display_text(value)


def incident_kind_label(lang: str, kind: str, utility: str) -> str:
    """The catalogue's name of an incident kind; an unknown kind is named by its utility."""
    known = catalogue_label(lang, "incident.kind.", kind)
    if known != display_text(kind):
        return known
    return t(lang, "incident.kind.anomaly", utility=catalogue_label(lang, "utility.", utility))


def loss_what(lang: str, loss: SourceLossView) -> str:
    """What stopped: the whole stream, one utility's stream, or one district's sensors."""
    if loss.scope == "utility":
        return t(lang, "loss.utility", utility=t(lang, f"utility.{loss.scope_value}"))
    if loss.scope == "district":
        name = (loss.district_en if lang == "en" else loss.district_zh) or loss.scope_value
        return t(lang, "loss.district", district=display_text(name))
    return t(lang, "loss.stream")


def source_loss_banner(lang: str, losses: Sequence[SourceLossView], tz: str) -> list:
    """One grey line per open source loss (overview, trust page, console, wall): what stopped,
    since when, how many sensors; its area is drawn as unknown, not as an alarm."""
    lines = []
    for x in losses:
        what = loss_what(lang, x)
        since = local_time(x.since, tz, "%m-%d %H:%M:%S")
        text = (
            t(lang, "loss.back", what=what)
            if x.back_at is not None
            else t(lang, "loss.banner", what=what, since=since, n=x.sensors, of=x.group_size)
        )
        lines.append(
            html.Div(text, className="banner source-loss", role="alert", **{"data-scope": x.scope})
        )
    return lines


# -- page pieces ------------------------------------------------------------------------------
def panel(title: str | None, *children: Any, kind: str = "", **attrs: Any) -> html.Section:
    """A page panel (``kind`` adds classes), with its title as a heading when it has one."""
    heading = [html.H2(title)] if title is not None else []
    return html.Section(className=f"panel {kind}".strip(), children=[*heading, *children], **attrs)


def plot_config(lang: str, **options: Any) -> dict[str, Any]:
    """A graph's Plotly config in the page's language: the mode bar's tooltips and the date
    axes' month and day names (zh-CN from assets/plotly-locale-zh-cn.js). Never a button that
    uploads the chart (Plotly Cloud): pipe-network data does not leave the network."""
    return {
        **options,
        "locale": "zh-CN" if lang == "zh" else "en",
        "modeBarButtonsToRemove": ["sendChartToCloud", "sendDataToCloud"],
    }


def empty_graph(graph_id: str, config: Any, **props: Any) -> dcc.Graph:
    """A graph drawn dark and empty until its page's first refresh fills it."""
    return dcc.Graph(id=graph_id, figure=build_empty_figure(), config=config, **props)


def updated_banner(lang: str, updated: datetime, tz: str) -> list:
    """The page banner while the database answers: a quiet 'updated at' line."""
    text = t(lang, "banner.updated", time=local_time(updated, tz, "%H:%M:%S"))
    return [html.Div(text, className="banner banner-ok")]


def db_down_banner(lang: str) -> list:
    """The page banner while the database cannot answer (the page keeps its last good data)."""
    return [html.Div(t(lang, "banner.db_down"), className="banner banner-error", role="alert")]


def data_table(head: Sequence[str | html.Th], rows: list, class_name: str) -> html.Table:
    """A table with a header row (text or ready ``Th`` cells) and ``rows``."""
    cells = [html.Th(h) if isinstance(h, str) else h for h in head]
    return html.Table(
        [html.Thead(html.Tr(cells)), html.Tbody(rows)], className=f"data-table {class_name}"
    )


# the data-trust columns after the first (a quantity, a utility or a district)
TRUST_HEAD = (
    "kpi.completeness",
    "trust.expected",
    "trust.received",
    "trust.seq_gaps",
    "trust.late",
    "trust.duplicates",
)


def severity_badge(lang: str, severity: str) -> html.Span:
    return html.Span(
        catalogue_label(lang, "severity.", severity), className=f"badge sev-{severity}"
    )


# -- tables -----------------------------------------------------------------------------------
def district_table(lang: str, summaries: Sequence[DistrictSummary]) -> html.Table:
    """All districts by name with sensor, alarm, silent and open-alert counts."""
    rows = []
    for s in summaries:
        condition = district_condition(s)
        name = display_text(s.name_en if lang == "en" else s.name_zh)
        name_cell = html.Td(
            [html.Span(className=f"dot cond-{condition}"), name], className="district-name"
        )
        cells = [
            name_cell,
            html.Td(str(s.sensors), className="num"),
            html.Td(str(s.open_alerts), className="num alarm" if s.open_alerts else "num"),
            html.Td(str(s.silent), className="num silent" if s.silent else "num"),
        ]
        rows.append(html.Tr(cells, className=f"row-{condition}", **{"data-adcode": str(s.adcode)}))
    head = [
        html.Th(t(lang, "col.district")),
        *(
            html.Th(t(lang, k), className="num")
            for k in ("col.sensors", "col.alerts", "col.silent")
        ),
    ]
    return data_table(head, rows, "district-table")


def alerts_table(
    lang: str,
    alerts: Sequence[AlertRow],
    *,
    tz: str,
    now: datetime,
    selectable: bool = False,
    table_id: str = "",
) -> html.Div:
    """Open alerts: time (Asia/Shanghai), severity, sensor, district, message, age; when
    ``selectable``, a pick button first and the state and assignee last."""
    if not alerts:
        return html.Div(t(lang, "overview.no_alerts"), className="empty")
    rows = []
    for a in alerts:
        unit, n = age_parts(now, a.raised_at)
        cells = [
            html.Td(local_time(a.raised_at, tz, "%m-%d %H:%M:%S"), className="time"),
            *_alert_cells(lang, a),
            html.Td(t(lang, unit, n=n), className="num"),
        ]
        if selectable:
            state = html.Td(catalogue_label(lang, "astate.", a.state))
            cells = [
                _pick_cell(table_id, a),
                *cells,
                state,
                html.Td(display_text(a.assignee or "—")),
            ]
        rows.append(_alert_row(cells, a, f"sev-row-{a.severity}", table_id if selectable else ""))
    head = [t(lang, "col.time"), *_alert_head(lang), t(lang, "col.age")]
    if selectable:
        head = ["#", *head, t(lang, "col.state"), t(lang, "col.assignee")]
    return _scrolling(data_table(head, rows, "alerts-table"))


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
        until = [
            html.Div(local_time(a.shelved_until, tz, "%m-%d %H:%M"), className="shelved-until"),
            html.Div(t(lang, "alerts.expires_in", left=t(lang, unit, n=n)), className="note"),
        ]
        cells = [
            _pick_cell(table_id, a),
            *_alert_cells(lang, a),
            html.Td(until),
            html.Td(display_text(a.shelved_by or "—")),
            html.Td(display_text(a.shelve_reason or "—"), className="shelve-reason"),
        ]
        rows.append(_alert_row(cells, a, "shelved-row", table_id))
    head = [
        "#",
        *_alert_head(lang),
        *(t(lang, k) for k in ("col.shelved_until", "col.shelved_by", "col.reason")),
    ]
    return _scrolling(data_table(head, rows, "alerts-table shelved-table"))


def _alert_head(lang: str) -> list[str]:
    return [t(lang, k) for k in ("col.severity", "col.sensor", "col.district", "col.message")]


def _alert_cells(lang: str, a: AlertRow) -> list[html.Td]:
    """Severity, sensor (name and id), district and message: the columns every alert list has."""
    sensor = [
        html.Div(display_text(a.sensor_name), className="sensor-name"),
        html.Div(display_text(a.sensor_id), className="sensor-id"),
    ]
    return [
        html.Td(severity_badge(lang, a.severity)),
        html.Td(sensor),
        html.Td(display_text(a.district(lang))),
        html.Td(display_text(a.message(lang)), className="message"),
    ]


def _pick_cell(table_id: str, a: AlertRow) -> html.Td:
    """The alert's number, shown as a button: a tap on it, or anywhere on its row, selects it
    (the row carries the id; issue 16: on a phone the badge alone was a 30x19 px target)."""
    return html.Td(html.Button(f"#{a.alert_id}", className="pick", tabIndex="-1"))


def _alert_row(cells: list, a: AlertRow, kind: str, table_id: str = "") -> html.Tr:
    """An alert's row; with ``table_id`` the whole row selects it (an id the console's callback
    matches as a pattern), and is reachable with the keyboard."""
    extra: dict[str, object] = {"data-alert-id": str(a.alert_id)}
    if table_id:
        extra |= {"id": {"type": f"{table_id}-pick", "alert": a.alert_id}, "tabIndex": "0"}
        kind += " pickable"
    return html.Tr(cells, className=f"alert-row {kind}", **extra)


def _scrolling(table: html.Table) -> html.Div:
    return html.Div(table, className="table-scroll")
