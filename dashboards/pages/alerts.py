"""Alert console for emergency staff: open alerts by severity and age, and the actions
(acknowledge, assign, shelve, unshelve, resolve) with a comment, each checked on the server.
Shelved alerts (shelved until a time still ahead) are not among the open alerts: they have a
section of their own with the expiry, who shelved them and why.

The actions call ``alerts.api`` (the alert lifecycle and its audit log); the role check is
here, in the callback, because Dash callbacks are reachable by anyone who can POST to
``/_dash-update-component``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from dash import ALL, ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from access.auth import can
from dashboards import queries
from dashboards.components import (
    alerts_table,
    catalogue_label,
    db_down_banner,
    incident_kind_label,
    panel,
    plot_config,
    shelved_table,
    source_loss_banner,
    updated_banner,
)
from dashboards.context import AppContext, read_districts
from dashboards.figures import build_incident_map_figure
from dashboards.i18n import t
from dashboards.login import login_url
from dashboards.model import (
    SEVERITIES,
    SHELVE_DEFAULT_H,
    UTILITIES,
    XY,
    District,
    IncidentFacts,
    SourceLossView,
    display_text,
    local_time,
    parse_shelve_hours,
)
from dashboards.security import Access

PATH = "/alerts"
NAV_KEY = "nav.alerts"
# the list is open (decision 0040); the selected alert's detail checks the session inside
# show_selected (an anonymous caller gets a login prompt); acting needs alert.act
CALLBACK_ACCESS = {
    "alerts-result": Access("alert.act"),
    "alerts-loss-result": Access("alert.act"),
}
ACTIONS = ("ack", "assign", "shelve", "unshelve", "resolve")
SHELVE_HOURS = (1, 4, 8, 24, 72)
AUDIT_ACTIONS = {"acknowledge": "ack"}  # alert_audit's action names that differ from ACTIONS


def layout(ctx: AppContext, lang: str) -> html.Div:
    user = ctx.current_user()
    who = (
        t(lang, "alerts.user", user=display_text(user.username), role=t(lang, "role." + user.role))
        if user
        else t(lang, "alerts.anonymous")
    )
    return html.Div(
        className="page alerts-page",
        children=[
            dcc.Interval(id="alerts-tick", interval=ctx.settings.dashboard_refresh_ms),
            dcc.Store(id="alerts-selected"),
            dcc.Store(id="alerts-changed", data=0),
            # who the page was built for: a refresh that finds no session says it has ended
            dcc.Store(id="alerts-session", data=user.username if user else None),
            dcc.Store(id="alerts-scrolled"),
            html.Div(id="alerts-banner"),
            html.Div(id="alerts-expired", role="alert"),
            # data that stopped: emergency staff see it before they read the alerts
            html.Div(id="alerts-losses"),
            html.Div(id="alerts-loss-result", role="status"),
            _filter_row(lang, who),
            panel(t(lang, "alerts.open"), html.Div(id="alerts-table"), style={"maxHeight": "52vh"}),
            _actions_panel(lang, user),
            # last: shelved alerts need nobody now (the selected alert's detail comes first)
            panel(
                t(lang, "alerts.shelved"),
                html.Div(id="alerts-shelved"),
                kind="shelved-panel",
                id="alerts-shelved-panel",
                style={"maxHeight": "30vh"},
            ),
        ],
    )


def _filter_row(lang: str, who: str) -> html.Div:
    severities = [{"label": t(lang, "severity." + s), "value": s} for s in SEVERITIES]
    return html.Div(
        className="form-row",
        children=[
            html.Span(who, id="alerts-user", className="note"),
            html.Span(t(lang, "alerts.filter.severity"), className="kpi-label"),
            dcc.Checklist(
                id="alerts-severity",
                options=severities,
                value=list(SEVERITIES),
                inline=True,
                className="severity-filter",
                inputStyle={"marginRight": "0.3rem"},
            ),
        ],
    )


def _actions_panel(lang: str, user: Any = None) -> html.Section:
    """The action form; its buttons are disabled for those who may not act (the server
    refuses their calls anyway: CALLBACK_ACCESS)."""
    allowed = can(user, "alert.act")
    refused = (
        "" if allowed else t(lang, "alerts.need_login" if user is None else "alerts.forbidden")
    )
    fields = [
        dcc.Input(
            id="alerts-comment",
            placeholder=t(lang, "alerts.comment"),
            maxLength=500,
            style={"width": "30rem"},
        ),
        dcc.Input(
            id="alerts-assignee",
            placeholder=t(lang, "alerts.assignee"),
            maxLength=64,
            style={"width": "14rem"},
        ),
        dcc.Dropdown(
            id="alerts-shelve-hours",
            options=[{"label": t(lang, "unit.hour", n=h), "value": h} for h in SHELVE_HOURS],
            value=4,
            clearable=False,
            style={"width": "9rem"},
        ),
    ]
    buttons = [
        html.Button(
            t(lang, f"alerts.action.{a}"),
            id=f"alerts-{a}",
            className="action",
            disabled=not allowed,
        )
        for a in ACTIONS
    ]
    # the facts first (what, where, what to close), then the actions and their confirmation,
    # then the record: on a phone one reads down to the buttons (issue 16)
    return panel(
        None,
        html.Div(t(lang, "alerts.select_first"), id="alerts-selected-label"),
        html.Div(id="alerts-detail"),
        html.H3(t(lang, "console.act_title")),
        html.Div(className="form-row action-fields", children=fields),
        html.Div(className="form-row action-buttons", children=buttons),
        html.Div(
            refused and html.Span(refused, className="note"), id="alerts-result", role="status"
        ),
        html.Div(id="alerts-timeline"),
        kind="actions-panel",
    )


# -- the list -----------------------------------------------------------------------------------
def refresh(
    ctx: AppContext, _n, severities, _changed, lang, session=None, selected=None, shown=None
):
    """The open alerts of the chosen severities, and the shelved ones; the open source losses
    (data that stopped: no alert says so); and, when the page was
    built for a user whose session has since ended, a notice with a login link that comes
    back to the selected alert (left as it is once shown: a link redrawn under a finger loses
    the tap)."""
    lang = ctx.lang(lang)
    now = ctx.clock()
    expired: Any = session_notice(lang, selected) if session and ctx.current_user() is None else []
    if expired and shown:
        expired = no_update
    chosen = severities if isinstance(severities, list) else []
    wanted = [s for s in chosen if s in SEVERITIES]
    try:
        with ctx.reader.connection() as conn, conn.transaction():
            # one transaction, one now(): an alert whose shelf ends between the two reads
            # is in exactly one of the tables (their pick buttons share one id space)
            rows = queries.fetch_open_alerts(conn, severities=wanted, limit=200)
            shelved = queries.fetch_open_alerts(conn, severities=wanted, shelved=True, limit=200)
            losses = queries.fetch_source_losses(conn)
    except queries.DatabaseUnavailable:
        return no_update, no_update, db_down_banner(lang), expired, no_update
    table = alerts_table(lang, rows, tz=ctx.tz, now=now, selectable=True, table_id="alerts")
    on_shelf = shelved_table(lang, shelved, tz=ctx.tz, now=now, table_id="alerts")
    lost = loss_lines(lang, losses, ctx.tz)
    return table, on_shelf, updated_banner(lang, now, ctx.tz), expired, lost


def loss_lines(lang: str, losses: list[SourceLossView], tz: str) -> list:
    """Each open source loss's grey line, and beside it who took it on, or the button to take
    it on (the button is offered to everyone; the server decides: ``acknowledge_loss``)."""
    out = []
    for loss in losses:
        if loss.acknowledged_by:
            at = local_time(loss.acknowledged_at, tz, "%H:%M") if loss.acknowledged_at else ""
            who = display_text(loss.acknowledged_by)
            side: Any = html.Span(
                t(lang, "loss.acknowledged", user=who, time=at), className="loss-ack-note"
            )
        elif loss.back_at is None:
            side = html.Button(
                t(lang, "loss.acknowledge"),
                id={"type": "loss-ack", "loss": loss.loss_id},
                className="action loss-ack",
                n_clicks=0,
            )
        else:
            side = None
        line = source_loss_banner(lang, [loss], tz)
        out.append(html.Div([*line, *([side] if side else [])], className="loss-row"))
    return out


def acknowledge_loss(ctx: AppContext, clicks: list, changed: object, lang: str | None):
    """A person takes a source loss on: the roles that may act on alerts (``alert.act``),
    checked here on the server; the loss and its audit row are written together."""
    lang = ctx.lang(lang)
    trigger = dash_ctx.triggered_id
    if not isinstance(trigger, dict) or not any(c for c in clicks or [] if c):
        return no_update, no_update
    loss_id = trigger.get("loss")
    if not isinstance(loss_id, int) or isinstance(loss_id, bool) or loss_id <= 0:
        return _error(t(lang, "alerts.failed", reason="loss")), no_update
    user = ctx.current_user()
    if user is None:
        return _error(t(lang, "alerts.need_login")), no_update
    if not can(user, "alert.act"):
        _audit_refusal(ctx, user.username, "loss_ack", loss_id)
        return _error(t(lang, "alerts.forbidden")), no_update
    from access.accounts import write_audit
    from alerts.api import acknowledge_loss as take_on

    try:
        with ctx.writer.connection() as conn, conn.transaction():
            outcome = take_on(conn, loss_id, user.username)
            if outcome == "acknowledged":
                detail = {"loss": loss_id}
                write_audit(conn, ctx.clock(), user.username, "source_loss_ack", "", detail)
    except queries.DatabaseUnavailable:
        return _error(t(lang, "banner.db_down")), no_update
    if outcome != "acknowledged":
        return _error(t(lang, f"loss.ack_{outcome}")), _changed_count(changed) + 1
    done = html.Span(t(lang, "loss.ack_done"), className="msg-ok")
    return done, _changed_count(changed) + 1


def login_href(lang: str, selected: object) -> str:
    """The login page, asked to come back to this console with ``selected`` open."""
    alert_id = alert_id_of(selected)
    return login_url(lang, PATH + (f"?alert={alert_id}" if alert_id else ""))


def session_notice(lang: str, selected: object) -> list:
    link = html.A(
        t(lang, "console.login_again"), href=login_href(lang, selected), id="alerts-relogin"
    )
    return [html.P([t(lang, "console.session_expired") + " ", link], className="msg-error")]


def pick(clicks, search=None, selected=None):
    """The alert whose row was tapped becomes the selection; before any, the one the URL
    names (``?alert=N``: where the login page sends a user back to)."""
    trigger = dash_ctx.triggered_id
    if isinstance(trigger, dict) and any(clicks or []):
        alert_id = alert_id_of(trigger.get("alert"))
    elif selected is None:
        wanted = parse_qs((search or "").lstrip("?")).get("alert", [None])[0]
        alert_id = alert_id_of(wanted)
    else:
        alert_id = None
    return no_update if alert_id is None else alert_id


def alert_id_of(value: object) -> int | None:
    """The selected alert's id from the browser (an int; anything else means none)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        alert_id = int(value) if isinstance(value, int) or len(value) <= 19 else 0
    except ValueError:
        return None
    return alert_id if 0 < alert_id < 2**63 else None


# -- the selected alert's detail ------------------------------------------------------------------
@dataclass(frozen=True)
class AlertDetail:
    events: list[tuple] = field(default_factory=list)  # queries.fetch_alert_timeline
    incident: IncidentFacts | None = None
    impact: dict[str, Any] | None = None  # read_impact
    location: tuple[float, float] | None = None  # its sensor (lon, lat)
    context: tuple[XY, XY] | None = None  # the network around it
    districts: list[District] = field(default_factory=list)
    district_adcode: int | None = None  # the sensor's district


CONTEXT_HALF_DEG = (0.012, 0.01)  # [degrees] the network drawn around the alert (about 1 km)
# incidents about the data, not the network (a source loss: alerts/source_loss.py): nothing
# to place, isolate or cut off, so no map and no impact
UNPLACED_KINDS = frozenset({"source_loss"})


def on_the_network(incident: IncidentFacts | None) -> bool:
    return incident is None or incident.kind not in UNPLACED_KINDS


def read_detail(ctx: AppContext, conn, alert_id: int) -> AlertDetail:
    incident = queries.fetch_incident_facts(conn, alert_id)
    if not on_the_network(incident):
        return AlertDetail(events=queries.fetch_alert_timeline(conn, alert_id), incident=incident)
    impact = read_impact(ctx, conn, isolation_link(conn, alert_id, incident), incident)
    location = queries.fetch_alert_location(conn, alert_id)
    network = impact["network"] if impact else incident.utility if incident else None
    context = None
    if location and network in UTILITIES:
        (lon, lat), (dx, dy) = location, CONTEXT_HALF_DEG
        xs, ys, _n = queries.fetch_network_lines(
            conn, network, bbox=(lon - dx, lat - dy, lon + dx, lat + dy)
        )
        context = (xs, ys)
    return AlertDetail(
        events=queries.fetch_alert_timeline(conn, alert_id),
        incident=incident,
        impact=impact,
        location=location,
        context=context,
        districts=read_districts(ctx, conn),
        district_adcode=queries.fetch_alert_district(conn, alert_id),
    )


def isolation_link(conn, alert_id: int, incident: IncidentFacts | None) -> tuple[str, str] | None:
    """The link whose isolation the console shows: where the engine placed the incident, or
    else the pipe or line the alert's sensor sits on."""
    if incident and incident.likely_location and incident.utility in ("water", "power"):
        return incident.utility, incident.likely_location
    return queries.fetch_alert_asset(conn, alert_id)


def read_impact(
    ctx: AppContext, conn, link: tuple[str, str] | None, incident: IncidentFacts | None = None
) -> dict | None:
    """What isolating ``link`` means (gis.analysis: valves to close, customers, population and
    facilities without supply, with their geometry for the map), or None when there is no such
    link. The figures the engine stored for the incident win over the recomputed ones."""
    if link is None:
        return None
    from gis.analysis import NetworkCache, fetch_isolation  # the network graph code, when needed

    cache = ctx.cache.get("network-cache", 3600, NetworkCache)
    try:
        doc = fetch_isolation(conn, link[0], link[1], cache=cache, with_geometry=True)
    except ValueError:  # gis.network.NetworkError: the link is not in the network graph
        return None
    names = {
        f["id"]: (f["properties"].get("name_zh"), f["properties"].get("name_en"))
        for f in doc["features"]
        if f["properties"].get("role") == "facility_without_supply"
    }
    stored = {k: v for k, v in (incident.affected if incident else {}).items() if k in STORED}
    return {
        **doc["isolation"],
        **stored,
        "facility_names": names,
        "network": link[0],
        "link": link[1],
        "features": doc["features"],
    }


STORED = ("valves_to_close", "sources_to_shut", "customers_without_supply",
          "population_without_supply")  # fmt: skip


def show_selected(ctx: AppContext, selected, _changed, lang):
    """The selected alert's facts (incident, map, impact) and its timeline, for a signed-in
    user; else a login link that comes back to this alert."""
    lang = ctx.lang(lang)
    alert_id = alert_id_of(selected)
    if alert_id is None:
        return t(lang, "alerts.select_first"), [], []
    label = t(lang, "alerts.selected", id=alert_id)
    # the timeline and the isolation plan (valves to close, facilities cut off) are for
    # signed-in staff (docs/decisions/0040): checked here, the callback is an open endpoint
    if ctx.current_user() is None:
        login = html.A(t(lang, "nav.login"), href=login_href(lang, alert_id), id="alerts-relogin")
        prompt: list[Any] = [t(lang, "alerts.detail_login") + " ", login]
        return label, [html.P(prompt, className="msg-error", id="alerts-login")], []
    try:
        with ctx.reader.connection() as conn:
            detail = read_detail(ctx, conn, alert_id)
    except queries.DatabaseUnavailable:
        detail = AlertDetail()
    facts = [
        *incident_view(lang, detail.incident),
        *incident_map(lang, detail),
        *impact_view(lang, detail.impact),
    ]
    timeline = [
        html.H3(t(lang, "alerts.timeline")),
        html.Ul(timeline_items(lang, ctx.tz, detail.events), className="timeline"),
    ]
    return label, facts, timeline


# the engine's own count and extent at the moment it wrote the explanation (alerts/incidents.py)
_ENGINE_COUNTS = re.compile(r"[：:]\s*\d+\s*(条相关告警|related alerts).*$")


def incident_view(lang: str, incident: IncidentFacts | None) -> list:
    """What the incident is and how far it reaches, counted now; the engine's explanation
    when it says more than its (dated) counts."""
    if incident is None:
        return [html.P(t(lang, "console.no_incident"), className="note", id="alerts-facts")]
    kind = incident_kind_label(lang, incident.kind, incident.utility)
    if incident.sensors > 1:
        counts = t(
            lang,
            "console.facts",
            n=incident.alerts,
            open=incident.open_alerts,
            sensors=incident.sensors,
            extent=f"{incident.extent_m:,.0f}",
        )
    else:
        counts = t(lang, "console.facts_one_sensor", n=incident.alerts, open=incident.open_alerts)
    said = incident.explanation[1] if lang == "en" else incident.explanation[0]
    said = _ENGINE_COUNTS.sub("", said or "").strip()
    lines = [html.Strong(kind), html.Br(), counts]
    if said and said != kind:
        lines += [html.Br(), html.Span(display_text(said), id="alerts-explanation")]
    return [html.P(lines, className="explanation incident-facts", id="alerts-facts")]


def incident_map(lang: str, detail: AlertDetail) -> list:
    """The sensor, the network around it and what its isolation closes off and cuts off."""
    if not detail.location:
        return []
    figure = build_incident_map_figure(
        detail.districts,
        detail.location,
        (detail.impact or {}).get("features", []),
        lang=lang,
        context=detail.context,
        district_adcode=detail.district_adcode,
    )
    return [
        dcc.Graph(
            id="alerts-map",
            figure=figure,
            config=plot_config(lang, displayModeBar=False, scrollZoom=True),
            className="incident-map",
        )
    ]


def impact_view(lang: str, impact: dict | None) -> list:
    if not impact:
        return []
    valves = [*impact.get("sources_to_shut", []), *impact["valves_to_close"]]
    facilities = [
        (en if lang == "en" and en else zh) or fid
        for fid, (zh, en) in sorted(impact["facility_names"].items())
    ]
    items = [
        t(lang, "alerts.valves", n=len(valves), ids=", ".join(map(display_text, valves)) or "—"),
        t(
            lang,
            "alerts.affected",
            customers=impact["customers_without_supply"],
            population=impact["population_without_supply"],
        ),
        t(lang, "alerts.facilities", names="、".join(map(display_text, facilities)) or "—"),
    ]
    return [
        html.H3(t(lang, "alerts.impact")),
        html.Ul([html.Li(i) for i in items], className="timeline impact", id="alerts-impact"),
    ]


def timeline_items(lang: str, tz: str, events: list[tuple]) -> list[html.Li]:
    """One line per audited action: when, who, what, the state it led to, the comment (the
    engine's in the page's language)."""
    items = []
    for at, actor, action, state, comment_zh, comment_en in events:
        done = catalogue_label(lang, "alerts.action.", AUDIT_ACTIONS.get(action, action))
        who = catalogue_label(lang, "alerts.actor.", actor)
        comment = comment_en if lang == "en" and comment_en else comment_zh
        text = (
            f"{local_time(at, tz, '%m-%d %H:%M:%S')} · {who} · "
            f"{done} → {catalogue_label(lang, 'astate.', state)}"
        )
        items.append(html.Li(text + (f" · {display_text(comment)}" if comment else "")))
    return items


# -- actions --------------------------------------------------------------------------------------
def act(ctx: AppContext, *args):
    """One of ACTIONS on the selected alert, for emergency staff and admins only."""
    selected, comment, assignee, hours, changed, lang = args[len(ACTIONS) :]
    lang = ctx.lang(lang)
    trigger = dash_ctx.triggered_id
    action = str(trigger).removeprefix("alerts-") if trigger else ""
    if action not in ACTIONS:
        return no_update, no_update
    # the server-side role check: the only one that counts
    user = ctx.current_user()
    if user is None:
        return _error(t(lang, "alerts.need_login")), no_update
    if not can(user, "alert.act"):
        _audit_refusal(ctx, user.username, action, selected)
        return _error(t(lang, "alerts.forbidden")), no_update
    alert_id = alert_id_of(selected)
    if alert_id is None:
        return _error(t(lang, "alerts.select_first")), no_update
    shelve = parse_shelve_hours(hours) if action == "shelve" else (SHELVE_DEFAULT_H, False)
    if shelve is None:  # the form offers 1-72 h; anything else came from elsewhere
        shown = display_text(hours if isinstance(hours, str) else repr(hours))[:40]
        return _error(t(lang, "alerts.shelve_bad", value=shown)), no_update
    shelve_h, clamped = shelve
    from alerts.api import TransitionError  # loaded on the first action: 0.3 s less at start

    note = str(comment or "").strip()[:500]
    try:
        with ctx.writer.connection() as conn:
            apply_action(
                conn, action, alert_id, user.username, note, assignee, shelve_h, ctx.clock()
            )
    except (TransitionError, LookupError) as exc:
        return _error(t(lang, "alerts.failed", reason=display_text(exc))), no_update
    except queries.DatabaseUnavailable:
        return _error(t(lang, "banner.db_down")), no_update
    done = t(lang, "alerts.done", action=t(lang, f"alerts.action.{action}"), id=alert_id)
    if action == "shelve" and clamped:
        done += " · " + t(lang, "alerts.shelve_clamped", hours=f"{shelve_h:g}")
    return html.Span(done, className="msg-ok"), _changed_count(changed) + 1


def apply_action(
    conn,
    action: str,
    alert_id: int,
    actor: str,
    comment: str,
    assignee: object,
    shelve_h: float,
    now: datetime,
) -> None:
    """The action through the alert lifecycle (alerts.api), audited there."""
    from alerts import api as alert_api

    if action == "ack":
        alert_api.acknowledge_alert(conn, alert_id, actor, comment, now=now)
    elif action == "assign":
        to = str(assignee or "").strip()[:64]
        alert_api.assign_alert(conn, alert_id, actor, to, comment, now=now)
    elif action == "shelve":
        until = now + timedelta(hours=shelve_h)
        reason = comment or "shelved from the console"
        alert_api.shelve_alert(conn, alert_id, actor, until, reason, comment, now=now)
    elif action == "unshelve":
        alert_api.unshelve_alert(conn, alert_id, actor, comment, now=now)
    else:
        alert_api.resolve_alert(conn, alert_id, actor, comment, now=now)


def _error(text: str) -> html.Span:
    return html.Span(text, className="msg-error")


def _changed_count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _audit_refusal(ctx: AppContext, username: str, action: str, alert_id: object) -> None:
    from access.accounts import write_audit

    detail = {"action": action, "alert": str(alert_id)[:32]}
    try:
        with ctx.writer.connection() as conn, conn.transaction():
            write_audit(conn, ctx.clock(), username, "refused:alert.act", "", detail)
    except queries.DatabaseUnavailable:
        pass


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("alerts-table", "children"),
        Output("alerts-shelved", "children"),
        Output("alerts-banner", "children"),
        Output("alerts-expired", "children"),
        Output("alerts-losses", "children"),
        Input("alerts-tick", "n_intervals"),
        Input("alerts-severity", "value"),
        Input("alerts-changed", "data"),
        State("lang", "data"),
        State("alerts-session", "data"),
        State("alerts-selected", "data"),
        State("alerts-expired", "children"),
    )(partial(refresh, ctx))
    app.callback(
        Output("alerts-selected", "data"),
        Input({"type": "alerts-pick", "alert": ALL}, "n_clicks"),
        State("url", "search"),
        State("alerts-selected", "data"),
    )(pick)
    app.callback(
        Output("alerts-selected-label", "children"),
        Output("alerts-detail", "children"),
        Output("alerts-timeline", "children"),
        Input("alerts-selected", "data"),
        Input("alerts-changed", "data"),
        State("lang", "data"),
    )(partial(show_selected, ctx))
    app.callback(
        Output("alerts-result", "children"),
        Output("alerts-changed", "data"),
        *(Input(f"alerts-{a}", "n_clicks") for a in ACTIONS),
        State("alerts-selected", "data"),
        State("alerts-comment", "value"),
        State("alerts-assignee", "value"),
        State("alerts-shelve-hours", "value"),
        State("alerts-changed", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(act, ctx))
    app.callback(
        Output("alerts-loss-result", "children"),
        Output("alerts-changed", "data", allow_duplicate=True),
        Input({"type": "loss-ack", "loss": ALL}, "n_clicks"),
        State("alerts-changed", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(acknowledge_loss, ctx))
    # in the browser (assets/wall.js): a tapped alert's facts, then an action's confirmation,
    # are scrolled into view (on a phone both were below the screen's edge)
    app.clientside_callback(
        ClientsideFunction(namespace="cityops", function_name="showAnswer"),
        Output("alerts-scrolled", "data"),
        Input("alerts-selected-label", "children"),
        Input("alerts-result", "children"),
        State("alerts-selected", "data"),
        prevent_initial_call=True,
    )
