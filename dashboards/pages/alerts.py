"""Alert console for emergency staff: open alerts by severity and age, and the actions
(acknowledge, assign, shelve, unshelve, resolve) with a comment, each checked on the server.
Shelved alerts (shelved until a time still ahead) are not among the open alerts: they have a
section of their own with the expiry, who shelved them and why.

The actions call ``alerts.store`` (the alert lifecycle and its audit log); the role check is
here, in the callback, because Dash callbacks are reachable by anyone who can POST to
``/_dash-update-component``.
"""

from __future__ import annotations

from datetime import timedelta

from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from dashboards import queries
from dashboards.auth import can
from dashboards.components import alerts_table, banner, shelved_table
from dashboards.context import AppContext
from dashboards.figures import build_incident_map_figure
from dashboards.i18n import MESSAGES, t
from dashboards.model import (
    SEVERITIES,
    SHELVE_DEFAULT_H,
    display_text,
    local_time,
    parse_shelve_hours,
)

PATH = "/alerts"
NAV_KEY = "nav.alerts"
ACTIONS = ("ack", "assign", "shelve", "unshelve", "resolve")
SHELVE_HOURS = (1, 4, 8, 24, 72)


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
            html.Div(id="alerts-banner"),
            html.Div(
                className="form-row",
                children=[
                    html.Span(who, id="alerts-user", className="note"),
                    html.Span(t(lang, "alerts.filter.severity"), className="kpi-label"),
                    dcc.Checklist(
                        id="alerts-severity",
                        options=[
                            {"label": t(lang, "severity." + s), "value": s} for s in SEVERITIES
                        ],
                        value=list(SEVERITIES),
                        inline=True,
                        inputStyle={"marginRight": "0.3rem", "marginLeft": "0.8rem"},
                    ),
                ],
            ),
            html.Section(
                className="panel",
                children=[html.H2(t(lang, "alerts.open")), html.Div(id="alerts-table")],
                style={"maxHeight": "52vh"},
            ),
            html.Section(
                className="panel actions-panel",
                children=[
                    html.Div(t(lang, "alerts.select_first"), id="alerts-selected-label"),
                    html.Div(
                        className="form-row",
                        children=[
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
                                options=[
                                    {"label": t(lang, "unit.hour", n=h), "value": h}
                                    for h in SHELVE_HOURS
                                ],
                                value=4,
                                clearable=False,
                                style={"width": "9rem"},
                            ),
                        ],
                    ),
                    html.Div(
                        className="form-row",
                        children=[
                            html.Button(
                                t(lang, f"alerts.action.{a}"),
                                id=f"alerts-{a}",
                                className="action",
                            )
                            for a in ACTIONS
                        ],
                    ),
                    html.Div(id="alerts-result", role="status"),
                    html.Div(id="alerts-timeline"),
                ],
            ),
            # last: shelved alerts need nobody now (the selected alert's detail comes first)
            html.Section(
                className="panel shelved-panel",
                id="alerts-shelved-panel",
                children=[html.H2(t(lang, "alerts.shelved")), html.Div(id="alerts-shelved")],
                style={"maxHeight": "30vh"},
            ),
        ],
    )


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("alerts-table", "children"),
        Output("alerts-shelved", "children"),
        Output("alerts-banner", "children"),
        Input("alerts-tick", "n_intervals"),
        Input("alerts-severity", "value"),
        Input("alerts-changed", "data"),
        State("lang", "data"),
    )
    def refresh(_n, severities, _changed, lang):
        lang = lang or ctx.settings.language
        now = ctx.clock()
        chosen = severities if isinstance(severities, list) else []
        wanted = [s for s in chosen if s in SEVERITIES]
        try:
            with ctx.reader.connection() as conn, conn.transaction():
                # one transaction, one now(): an alert whose shelf ends between the two reads
                # is in exactly one of the tables (their pick buttons share one id space)
                rows = queries.fetch_open_alerts(conn, severities=wanted, limit=200)
                shelved = queries.fetch_open_alerts(
                    conn, severities=wanted, shelved=True, limit=200
                )
        except queries.DatabaseUnavailable as exc:
            return no_update, no_update, banner(lang, str(exc), None, ctx.tz)
        table = alerts_table(lang, rows, tz=ctx.tz, now=now, selectable=True, table_id="alerts")
        on_shelf = shelved_table(lang, shelved, tz=ctx.tz, now=now, table_id="alerts")
        return table, on_shelf, banner(lang, None, now, ctx.tz)

    @app.callback(
        Output("alerts-selected", "data"),
        Input({"type": "alerts-pick", "alert": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def pick(clicks):
        trigger = dash_ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            return no_update
        alert_id = alert_id_of(trigger.get("alert"))
        return no_update if alert_id is None else alert_id

    @app.callback(
        Output("alerts-selected-label", "children"),
        Output("alerts-timeline", "children"),
        Input("alerts-selected", "data"),
        Input("alerts-changed", "data"),
        State("lang", "data"),
    )
    def show_selected(selected, _changed, lang):
        lang = lang or ctx.settings.language
        alert_id = alert_id_of(selected)
        if alert_id is None:
            return t(lang, "alerts.select_first"), []
        # the timeline and the isolation plan (valves to close, facilities cut off) are for
        # signed-in staff (docs/decisions/0040): checked here, the callback is an open endpoint
        if ctx.current_user() is None:
            return t(lang, "alerts.selected", id=alert_id), [
                html.P(
                    [
                        t(lang, "alerts.detail_login") + " ",
                        html.A(t(lang, "nav.login"), href="/login"),
                    ],
                    className="msg-error",
                    id="alerts-login",
                )
            ]
        impact, location, districts, context, explanation = None, None, [], None, None
        try:
            with ctx.reader.connection() as conn:
                events = queries.fetch_alert_timeline(conn, alert_id)
                impact = read_impact(ctx, conn, alert_id)
                location = queries.fetch_alert_location(conn, alert_id)
                explanation = queries.fetch_alert_explanation(conn, alert_id)
                context = None
                if impact and location:
                    lon, lat = location
                    xs, ys, _n = queries.fetch_network_lines(
                        conn,
                        impact["network"],
                        bbox=(lon - 0.01, lat - 0.008, lon + 0.01, lat + 0.008),
                    )
                    context = (xs, ys)
                districts = ctx.cache.get("districts", 600, lambda: queries.fetch_districts(conn))
        except queries.DatabaseUnavailable:
            events = []
        incident_map = (
            [
                dcc.Graph(
                    id="alerts-map",
                    figure=build_incident_map_figure(
                        districts,
                        location,
                        (impact or {}).get("features", []),
                        lang=lang,
                        context=context,
                    ),
                    config={"displayModeBar": False, "scrollZoom": True},
                    style={"height": "20rem"},
                )
            ]
            if location
            else []
        )
        items = [
            html.Li(
                f"{local_time(at, ctx.tz, '%m-%d %H:%M:%S')} · {display_text(actor)} · "
                f"{_label(lang, 'alerts.action.', _ACT_KEYS.get(action, action))} → "
                f"{_label(lang, 'astate.', state)}"
                + (f" · {display_text(comment)}" if comment else "")
            )
            for at, actor, action, state, comment in events
        ]
        why = (
            [
                html.P(
                    display_text(explanation[1] if lang == "en" else explanation[0]),
                    className="explanation",
                    id="alerts-explanation",
                )
            ]
            if explanation
            else []
        )
        return t(lang, "alerts.selected", id=alert_id), [
            *why,
            *incident_map,
            *impact_view(lang, impact),
            html.H3(t(lang, "alerts.timeline")),
            html.Ul(items, className="timeline"),
        ]

    @app.callback(
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
    )
    def act(*args):
        selected, comment, assignee, hours, changed, lang = args[len(ACTIONS) :]
        alert_id = alert_id_of(selected)
        lang = lang or ctx.settings.language
        trigger = dash_ctx.triggered_id
        action = str(trigger).removeprefix("alerts-") if trigger else ""
        if action not in ACTIONS:
            return no_update, no_update
        # the server-side role check: the only one that counts
        user = ctx.current_user()
        if user is None:
            return html.Span(t(lang, "alerts.need_login"), className="msg-error"), no_update
        if not can(user, "alert.act"):
            _audit_refusal(ctx, user.username, action, selected)
            return html.Span(t(lang, "alerts.forbidden"), className="msg-error"), no_update
        if alert_id is None:
            return html.Span(t(lang, "alerts.select_first"), className="msg-error"), no_update
        shelve = parse_shelve_hours(hours) if action == "shelve" else (SHELVE_DEFAULT_H, False)
        if shelve is None:  # the form offers 1-72 h; anything else came from elsewhere
            shown = display_text(hours if isinstance(hours, str) else repr(hours))[:40]
            return html.Span(
                t(lang, "alerts.shelve_bad", value=shown), className="msg-error"
            ), no_update
        shelve_h, clamped = shelve
        try:
            from alerts import api as alert_store
            from alerts.api import TransitionError
        except ImportError:
            return html.Span(t(lang, "alerts.unavailable"), className="msg-error"), no_update
        comment = str(comment or "").strip()[:500]
        now = ctx.clock()
        try:
            with ctx.writer.connection() as conn:
                if action == "ack":
                    alert_store.acknowledge_alert(conn, alert_id, user.username, comment, now=now)
                elif action == "assign":
                    alert_store.assign_alert(
                        conn,
                        alert_id,
                        user.username,
                        str(assignee or "").strip()[:64],
                        comment,
                        now=now,
                    )
                elif action == "shelve":
                    alert_store.shelve_alert(
                        conn,
                        alert_id,
                        user.username,
                        now + timedelta(hours=shelve_h),
                        comment or "shelved from the console",
                        comment,
                        now=now,
                    )
                elif action == "unshelve":
                    alert_store.unshelve_alert(conn, alert_id, user.username, comment, now=now)
                else:
                    alert_store.resolve_alert(conn, alert_id, user.username, comment, now=now)
        except (TransitionError, LookupError) as exc:
            return html.Span(
                t(lang, "alerts.failed", reason=display_text(exc)), className="msg-error"
            ), no_update
        except queries.DatabaseUnavailable:
            return html.Span(t(lang, "banner.db_down"), className="msg-error"), no_update
        done = t(lang, "alerts.done", action=t(lang, f"alerts.action.{action}"), id=alert_id)
        if action == "shelve" and clamped:
            done += " · " + t(lang, "alerts.shelve_clamped", hours=f"{shelve_h:g}")
        return html.Span(done, className="msg-ok"), _changed_count(changed) + 1


def alert_id_of(value: object) -> int | None:
    """The selected alert's id from the browser (an int; anything else means none)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        alert_id = int(value) if isinstance(value, int) or len(value) <= 19 else 0
    except ValueError:
        return None
    return alert_id if 0 < alert_id < 2**63 else None


def _changed_count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def read_impact(ctx: AppContext, conn, alert_id: int) -> dict | None:
    """What isolating the alert's pipe or line means (gis.analysis: valves to close, customers,
    population and facilities without supply), or None when its sensor is not on a network."""
    asset = queries.fetch_alert_asset(conn, alert_id)
    if asset is None:
        return None
    try:
        from gis.analysis import NetworkCache, fetch_isolation
    except ImportError:
        return None
    cache = ctx.cache.get("network-cache", 3600, NetworkCache)
    try:
        doc = fetch_isolation(conn, asset[0], asset[1], cache=cache, with_geometry=True)
    except ValueError:  # gis.network.NetworkError: the link is not in the network graph
        return None
    summary = doc["isolation"]
    names = {
        f["id"]: (f["properties"].get("name_zh"), f["properties"].get("name_en"))
        for f in doc["features"]
        if f["properties"].get("role") == "facility_without_supply"
    }
    return {
        **summary,
        "facility_names": names,
        "network": asset[0],
        "link": asset[1],
        "features": doc["features"],
    }


def impact_view(lang: str, impact: dict | None) -> list:
    if not impact:
        return []
    valves = [*impact.get("sources_to_shut", []), *impact["valves_to_close"]]
    facilities = [
        (en if lang == "en" and en else zh) or fid
        for fid, (zh, en) in sorted(impact["facility_names"].items())
    ]
    return [
        html.H3(t(lang, "alerts.impact")),
        html.Ul(
            [
                html.Li(
                    t(
                        lang,
                        "alerts.valves",
                        n=len(valves),
                        ids=", ".join(map(display_text, valves)) or "—",
                    )
                ),
                html.Li(
                    t(
                        lang,
                        "alerts.affected",
                        customers=impact["customers_without_supply"],
                        population=impact["population_without_supply"],
                    )
                ),
                html.Li(
                    t(
                        lang,
                        "alerts.facilities",
                        names="、".join(map(display_text, facilities)) or "—",
                    )
                ),
            ],
            className="timeline impact",
            id="alerts-impact",
        ),
    ]


_ACT_KEYS = {
    "acknowledge": "ack",
    "assign": "assign",
    "shelve": "shelve",
    "unshelve": "unshelve",
    "resolve": "resolve",
}


def _label(lang: str, prefix: str, value: str) -> str:
    """A catalogue label for a known value, the value itself (as text) otherwise."""
    return t(lang, prefix + value) if prefix + value in MESSAGES["zh"] else display_text(value)


def _audit_refusal(ctx: AppContext, username: str, action: str, alert_id: object) -> None:
    from dashboards.accounts import write_audit

    try:
        with ctx.writer.connection() as conn, conn.transaction():
            write_audit(
                conn,
                ctx.clock(),
                username,
                "refused:alert.act",
                "",
                {"action": action, "alert": str(alert_id)[:32]},
            )
    except queries.DatabaseUnavailable:
        pass
