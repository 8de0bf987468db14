"""User administration (admins only): accounts, roles, passwords, sessions, API tokens, and
the bus's device credentials (disable, enable, revoke).

The page and every one of its callbacks need ``users.manage``: the router does not build the
layout for anyone else and ``dashboards.guard`` refuses their callback calls (403) before these
functions run; each function checks again before it writes. Every change is audited
(``access.accounts.record_dashboard_event``: who, what, to whom, when, from where) in the same
transaction as the change itself.
"""

from __future__ import annotations

import re
import secrets
from functools import partial
from typing import Any

from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from access import accounts
from access.auth import ROLES, SSO_PREFIX, can, password_problem
from dashboards import queries
from dashboards.components import data_table, panel
from dashboards.context import AppContext
from dashboards.guard import door
from dashboards.i18n import dropdown_labels, t
from dashboards.model import display_text, local_time
from dashboards.security import Access

PATH = "/admin"
NAV_KEY = "nav.admin"
ACCESS = Access("users.manage")  # the page and all its callbacks
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # dashboard_users' CHECK
USER_ACTIONS = ("disable", "enable", "set-role", "reset", "end-all")  # buttons admin-<action>
ROW_ACTIONS = ("end-session", "revoke")  # buttons in table rows: {"type": "admin-<action>", ...}
DEVICE_ACTIONS = ("device-disable", "device-enable", "device-revoke")  # buttons admin-<action>
DEVICES_SHOWN = 200


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page admin-page",
        children=[
            dcc.Store(id="admin-changed", data=0),
            dcc.Store(id="admin-user"),
            panel(t(lang, "admin.users"), html.Div(id="admin-users", className="table-scroll")),
            _create_panel(lang),
            _manage_panel(lang),
            panel(
                t(lang, "admin.sessions"),
                html.Div(id="admin-sessions"),
                html.Div(className="form-row", children=[_button(lang, "end-all")]),
            ),
            api_tokens_section(lang),
            device_credentials_section(ctx, lang),
        ],
    )


def _button(lang: str, action: str) -> html.Button:
    return html.Button(t(lang, f"admin.action.{action}"), id=f"admin-{action}", className="action")


def _role_options(lang: str) -> list[dict[str, str]]:
    return [{"label": t(lang, f"role.{r}"), "value": r} for r in ROLES]


def _create_panel(lang: str) -> html.Section:
    fields = [
        dcc.Input(id="admin-new-username", placeholder=t(lang, "admin.username"), maxLength=64),
        dcc.Input(id="admin-new-name", placeholder=t(lang, "admin.display_name"), maxLength=100),
        dcc.RadioItems(
            id="admin-new-role", options=_role_options(lang), value="operator", inline=True
        ),
        dcc.Input(
            id="admin-new-password",
            type="password",
            placeholder=t(lang, "admin.password"),
            maxLength=1024,
            autoComplete="new-password",
        ),
        html.Button(t(lang, "admin.action.create"), id="admin-create", className="action"),
    ]
    return panel(
        t(lang, "admin.create"),
        html.Div(className="form-row", children=fields),
        html.Div(t(lang, "admin.password_rule"), className="note"),
        html.Div(id="admin-create-result", role="status"),
    )


def _manage_panel(lang: str) -> html.Section:
    return panel(
        t(lang, "admin.manage"),
        html.Div(t(lang, "admin.pick"), id="admin-selected-label", className="note"),
        html.Div(
            className="form-row",
            children=[
                _button(lang, "disable"),
                _button(lang, "enable"),
                dcc.RadioItems(id="admin-role", options=_role_options(lang), inline=True),
                _button(lang, "set-role"),
                _button(lang, "reset"),
            ],
        ),
        html.Div(id="admin-result", role="status"),
    )


def api_tokens_section(lang: str) -> html.Section:
    """The selected user's API tokens (access.tokens), to revoke."""
    return panel(t(lang, "admin.tokens"), html.Div(id="admin-tokens"), id="admin-tokens-panel")


def device_credentials_section(ctx: AppContext, lang: str) -> html.Section:
    """The bus's device identities (access.bus, on the running broker): list, disable, enable
    and revoke. Enrolment stays on the CLI (``cityops devices add``): its password or key is
    shown once, to whoever installs the device."""
    return panel(
        t(lang, "admin.devices"),
        dcc.Store(id="admin-devices-changed", data=0),
        html.Div(
            className="form-row",
            children=[
                dcc.Input(
                    id="admin-devices-filter",
                    placeholder=t(lang, "admin.devices_filter"),
                    maxLength=64,
                    debounce=True,
                ),
                dcc.Dropdown(
                    id="admin-device",
                    options=[],
                    className="admin-device-pick",
                    placeholder=t(lang, "admin.device_placeholder"),
                    labels=dropdown_labels(lang),
                ),
                *(_button(lang, a) for a in DEVICE_ACTIONS),
            ],
        ),
        html.Div(id="admin-devices", className="table-scroll"),
        html.Div(id="admin-devices-result", role="status"),
        html.Div(  # the command as code: the same in every language
            [t(lang, "admin.devices_cli"), " ", html.Code("cityops devices add")], className="note"
        ),
        id="admin-devices-panel",
    )


# -- reads --------------------------------------------------------------------------------------
def users_table(lang: str, tz: str, users: list[dict[str, Any]]) -> html.Table:
    head = [
        t(lang, "admin.username"),
        t(lang, "admin.display_name"),
        t(lang, "admin.role"),
        t(lang, "admin.state"),
        t(lang, "admin.last_login"),
        t(lang, "admin.live_sessions"),
        t(lang, "admin.failures"),
    ]
    rows = [
        html.Tr(
            [
                html.Td(
                    html.Button(
                        display_text(u["username"]),
                        id={"type": "admin-pick", "user": u["username"]},
                        className="pick",
                    )
                ),
                html.Td(display_text(u["display_name"] or "")),
                html.Td(t(lang, f"role.{u['role']}")),
                html.Td(t(lang, "admin.disabled" if u["disabled"] else "admin.active")),
                html.Td(local_time(u["last_login_at"], tz, "%Y-%m-%d %H:%M")),
                html.Td(str(u["sessions"])),
                html.Td(str(u["recent_failures"])),
            ],
            className="row-disabled" if u["disabled"] else "",
        )
        for u in users
    ]
    return data_table(head, rows, "admin-users-table")


def refresh_users(ctx: AppContext, _changed, lang):
    """Every account (a click on a name chooses it)."""
    lang = ctx.lang(lang)
    if not can(ctx.current_user(), "users.manage"):
        return no_update
    try:
        with ctx.writer.connection() as conn:
            users = accounts.read_users(conn)
    except queries.DatabaseUnavailable:
        return t(lang, "banner.db_down")
    return users_table(lang, ctx.tz, users)


def pick(_clicks):
    """The account whose name was clicked becomes the one to manage."""
    trigger = dash_ctx.triggered_id
    clicked = dash_ctx.triggered[0].get("value") if dash_ctx.triggered else None
    if not isinstance(trigger, dict) or not clicked:
        return no_update
    user = trigger.get("user")
    return user if isinstance(user, str) and USERNAME_RE.match(user) else no_update


def show_user(ctx: AppContext, username, _changed, lang):
    """The chosen account: its name, role, live sessions and API tokens."""
    lang = ctx.lang(lang)
    nothing = t(lang, "admin.pick"), no_update, [], []
    if not can(ctx.current_user(), "users.manage") or not isinstance(username, str):
        return nothing
    try:
        with ctx.writer.connection() as conn:
            user = accounts.read_user(conn, username)
            sessions = accounts.read_sessions(conn, username)
            tokens = read_api_tokens(conn, username)
    except queries.DatabaseUnavailable:
        return t(lang, "banner.db_down"), no_update, [], []
    if user is None:
        return nothing
    state = t(lang, "admin.disabled" if user["disabled"] else "admin.active")
    label = t(
        lang, "admin.selected", user=display_text(username), role=t(lang, f"role.{user['role']}")
    )
    return (
        f"{label} · {state}",
        user["role"],
        sessions_table(ctx, lang, sessions),
        tokens_table(ctx, lang, tokens),
    )


def sessions_table(ctx: AppContext, lang: str, sessions: list[dict[str, Any]]) -> html.Table:
    rows = [
        html.Tr(
            [
                html.Td(f"#{s['id']}"),
                html.Td(local_time(s["created_at"], ctx.tz, "%Y-%m-%d %H:%M")),
                html.Td(local_time(s["last_seen_at"], ctx.tz, "%Y-%m-%d %H:%M")),
                html.Td(local_time(s["expires_at"], ctx.tz, "%Y-%m-%d %H:%M")),
                html.Td(display_text(s["client"] or "—")),
                html.Td(
                    html.Button(
                        t(lang, "admin.action.end-session"),
                        id={"type": "admin-end-session", "session": s["id"]},
                        className="action",
                    )
                ),
            ]
        )
        for s in sessions
    ]
    head = [
        t(lang, "admin.session"),
        t(lang, "admin.opened"),
        t(lang, "admin.last_seen"),
        t(lang, "admin.expires"),
        t(lang, "admin.client"),
        "",
    ]
    return data_table(head, rows, "admin-sessions-table")


def tokens_table(ctx: AppContext, lang: str, tokens: list | None) -> Any:
    if tokens is None:
        return t(lang, "admin.tokens_unavailable")
    now = ctx.clock()
    rows = [
        html.Tr(
            [
                html.Td(f"#{k.id}"),
                html.Td(display_text(k.name)),
                html.Td(t(lang, f"role.{k.role}") if k.role in ROLES else display_text(k.role)),
                html.Td(local_time(k.expires_at, ctx.tz, "%Y-%m-%d")),
                html.Td(t(lang, f"admin.token_{k.state(now)}")),
                html.Td(
                    html.Button(
                        t(lang, "admin.action.revoke"),
                        id={"type": "admin-revoke", "token": k.id},
                        className="action",
                    )
                    if k.state(now) == "active"
                    else ""
                ),
            ]
        )
        for k in tokens
    ]
    head = [
        t(lang, "admin.token"),
        t(lang, "admin.token_name"),
        t(lang, "admin.role"),
        t(lang, "admin.expires"),
        t(lang, "admin.state"),
        "",
    ]
    return data_table(head, rows, "admin-tokens-table")


def read_api_tokens(conn, username: str) -> list | None:
    """The user's API tokens, or None where this build has no API tokens (access.tokens)."""
    try:
        from access import tokens
    except ImportError:
        return None
    return list(tokens.read_tokens(conn, username))


# -- changes ------------------------------------------------------------------------------------
def create_user(ctx: AppContext, _n, username, name, role, password, changed, lang):
    """A new account, if its name is free and its password passes the policy."""
    lang = ctx.lang(lang)
    admin = ctx.current_user()
    if not can(admin, "users.manage"):
        return _error(t(lang, "page.forbidden")), no_update
    username = str(username or "").strip().lower()
    password = str(password or "")
    if not USERNAME_RE.match(username) or username.startswith(SSO_PREFIX):
        return _error(t(lang, "admin.bad_username")), no_update
    if role not in ROLES:
        return _error(t(lang, "admin.bad_role")), no_update
    problem = password_problem(password, username)
    if problem:
        return _error(t(lang, f"password.{problem}")), no_update
    try:
        with ctx.writer.connection() as conn, conn.transaction():
            if not accounts.create_user(conn, username, password, role, str(name or "")[:100]):
                return _error(t(lang, "admin.taken", user=username)), no_update
            _audit(ctx, conn, admin.username, "admin.user_create", username, {"role": role})
    except queries.DatabaseUnavailable:
        return _error(t(lang, "banner.db_down")), no_update
    done = t(lang, "admin.created", user=username, role=t(lang, f"role.{role}"))
    return html.Span(done, className="msg-ok"), _count(changed) + 1


def act_on_user(ctx: AppContext, *args):
    """One of USER_ACTIONS, or a row's ROW_ACTIONS, on the chosen account."""
    username, role, changed, lang = args[len(USER_ACTIONS) + len(ROW_ACTIONS) :]
    lang = ctx.lang(lang)
    trigger = dash_ctx.triggered_id
    clicked = dash_ctx.triggered[0].get("value") if dash_ctx.triggered else None
    item: Any = None
    if isinstance(trigger, dict):  # a button in a table row (appearing rows do not count)
        action = str(trigger.get("type", "")).removeprefix("admin-")
        item = trigger.get("session", trigger.get("token"))
        if action not in ROW_ACTIONS or not clicked:
            return no_update, no_update
    else:
        action = str(trigger or "").removeprefix("admin-")
        if action not in USER_ACTIONS:
            return no_update, no_update
    admin = ctx.current_user()
    if not can(admin, "users.manage"):
        return _error(t(lang, "page.forbidden")), no_update
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        return _error(t(lang, "admin.pick_first")), no_update
    if username == admin.username and action in ("disable", "set-role"):
        return _error(t(lang, "admin.not_yourself")), no_update
    try:
        with ctx.writer.connection() as conn, conn.transaction():
            message = apply_user_action(
                ctx, conn, admin.username, action, username, role, item, lang
            )
    except queries.DatabaseUnavailable:
        return _error(t(lang, "banner.db_down")), no_update
    except ValueError as exc:
        return _error(display_text(str(exc))), no_update
    if isinstance(message, html.Span):
        return message, _count(changed) + 1
    return _error(message), no_update


def apply_user_action(
    ctx: AppContext,
    conn,
    actor: str,
    action: str,
    username: str,
    role: Any,
    item: Any,
    lang: str,
) -> html.Span | str:
    """Do it and audit it (one transaction); a Span when done, else the reason as text."""
    missing = t(lang, "admin.no_such", user=username)
    if action in ("disable", "enable"):
        if not accounts.write_user_disabled(conn, username, action == "disable"):
            return missing
        _audit(ctx, conn, actor, f"admin.user_{action}", username, {})
        return _ok(t(lang, f"admin.done_{action}", user=username))
    if action == "set-role":
        if role not in ROLES:
            return t(lang, "admin.bad_role")
        before = accounts.read_user(conn, username)
        if before is None or not accounts.write_user_role(conn, username, role):
            return missing
        _audit(
            ctx, conn, actor, "admin.role_change", username, {"from": before["role"], "to": role}
        )
        return _ok(t(lang, "admin.done_role", user=username, role=t(lang, f"role.{role}")))
    if action == "reset":
        temporary = temporary_password()
        if not accounts.write_user_password(conn, username, temporary):
            return t(lang, "admin.no_password", user=username)
        _audit(ctx, conn, actor, "admin.password_reset", username, {})
        # shown once, here, to the admin who reset it; never stored or logged
        return html.Span(
            [
                t(lang, "admin.done_reset", user=username),
                html.Code(temporary, id="admin-temporary-password", className="mono"),
            ],
            className="msg-ok",
        )
    if action in ("end-session", "end-all"):
        one = _int(item) if action == "end-session" else None
        if action == "end-session" and one is None:
            return t(lang, "admin.pick_first")
        n = accounts.end_sessions(conn, username, one)
        _audit(ctx, conn, actor, "admin.sessions_end", username, {"session": one, "ended": n})
        return _ok(t(lang, "admin.done_sessions", n=n, user=username))
    # revoke an API token of this user (access.tokens audits it in its own table)
    token = _int(item)
    if token is None:
        return t(lang, "admin.pick_token")
    from access import tokens

    owned = {k.id for k in tokens.read_tokens(conn, username)}
    if token not in owned or not tokens.revoke_token(conn, token, actor=actor, now=ctx.clock()):
        return t(lang, "admin.pick_token")
    _audit(ctx, conn, actor, "admin.token_revoke", username, {"token": token})
    return _ok(t(lang, "admin.done_revoke", token=token, user=username))


def temporary_password() -> str:
    """A one-time password for a reset: 20 random characters (passes the policy by length)."""
    while True:
        candidate = secrets.token_urlsafe(15)
        if password_problem(candidate) is None:
            return candidate


def refresh_devices(ctx: AppContext, _changed, wanted, lang):
    """The devices whose id contains ``wanted`` (the first DEVICES_SHOWN), as a table and as
    the choices of the device picker."""
    from access.bus import BusAdmin, BusAdminError

    lang = ctx.lang(lang)
    if not can(ctx.current_user(), "users.manage"):
        return _error(t(lang, "page.forbidden")), []
    try:
        with BusAdmin(ctx.settings.mqtt_url, timeout_s=5.0) as bus:
            devices = sorted(bus.devices(), key=lambda d: d.sensor_id)
    except (BusAdminError, OSError, ValueError):
        return _error(t(lang, "admin.devices_unreachable")), []
    needle = str(wanted or "").strip().lower()
    shown = [d for d in devices if needle in d.sensor_id][:DEVICES_SHOWN]
    state = {True: t(lang, "admin.device_enabled"), False: t(lang, "admin.device_disabled")}
    rows = [
        html.Tr([html.Td(d.sensor_id), html.Td(state[d.enabled])], **{"data-id": d.sensor_id})
        for d in shown
    ]
    head = [t(lang, "admin.device"), t(lang, "admin.device_state")]
    table = data_table(head, rows, "admin-devices-table")
    count = t(lang, "admin.devices_shown", shown=len(shown), total=len(devices))
    options = [{"label": d.sensor_id, "value": d.sensor_id} for d in shown]
    return html.Div([table, html.Div(count, className="note")]), options


def act_on_device(ctx: AppContext, *args):
    """Disable, enable or revoke the chosen device on the running broker; audited."""
    from access.bus import BusAdmin, BusAdminError

    device, changed, lang = args[len(DEVICE_ACTIONS) :]
    lang = ctx.lang(lang)
    action = str(dash_ctx.triggered_id or "").removeprefix("admin-")
    if action not in DEVICE_ACTIONS:
        return no_update, no_update
    admin = ctx.current_user()
    if not can(admin, "users.manage"):
        return _error(t(lang, "page.forbidden")), no_update
    if not isinstance(device, str) or not USERNAME_RE.match(device):
        return _error(t(lang, "admin.device_pick")), no_update
    try:
        with BusAdmin(ctx.settings.mqtt_url, timeout_s=5.0) as bus:
            if action == "device-revoke":
                bus.revoke([device])
            else:
                bus.set_enabled(device, action == "device-enable")
        with ctx.writer.connection() as conn, conn.transaction():
            _audit(ctx, conn, admin.username, f"admin.{action.replace('-', '_')}", device, {})
    except (BusAdminError, OSError) as exc:
        return _error(display_text(str(exc))), no_update
    except queries.DatabaseUnavailable:
        return _error(t(lang, "banner.db_down")), no_update
    done = t(lang, "admin.device_done", device=device, action=t(lang, f"admin.action.{action}"))
    return _ok(done), _count(changed) + 1


def _audit(ctx: AppContext, conn, actor: str, action: str, target: str, detail: dict) -> None:
    accounts.record_dashboard_event(
        conn, actor, action, target, detail, now=ctx.clock(), client=door(ctx.proxies).client
    )


def _ok(text: str) -> html.Span:
    return html.Span(text, className="msg-ok")


def _error(text: str) -> html.Span:
    return html.Span(text, className="msg-error")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("admin-devices", "children"),
        Output("admin-device", "options"),
        Input("admin-devices-changed", "data"),
        Input("admin-devices-filter", "value"),
        State("lang", "data"),
    )(partial(refresh_devices, ctx))
    app.callback(
        Output("admin-devices-result", "children"),
        Output("admin-devices-changed", "data"),
        *(Input(f"admin-{a}", "n_clicks") for a in DEVICE_ACTIONS),
        State("admin-device", "value"),
        State("admin-devices-changed", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(act_on_device, ctx))
    app.callback(
        Output("admin-users", "children"),
        Input("admin-changed", "data"),
        State("lang", "data"),
    )(partial(refresh_users, ctx))
    app.callback(
        Output("admin-user", "data"),
        Input({"type": "admin-pick", "user": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )(pick)
    app.callback(
        Output("admin-selected-label", "children"),
        Output("admin-role", "value"),
        Output("admin-sessions", "children"),
        Output("admin-tokens", "children"),
        Input("admin-user", "data"),
        Input("admin-changed", "data"),
        State("lang", "data"),
    )(partial(show_user, ctx))
    app.callback(
        Output("admin-create-result", "children"),
        Output("admin-changed", "data"),
        Input("admin-create", "n_clicks"),
        State("admin-new-username", "value"),
        State("admin-new-name", "value"),
        State("admin-new-role", "value"),
        State("admin-new-password", "value"),
        State("admin-changed", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(create_user, ctx))
    app.callback(
        Output("admin-result", "children"),
        Output("admin-changed", "data", allow_duplicate=True),
        *(Input(f"admin-{a}", "n_clicks") for a in USER_ACTIONS),
        Input({"type": "admin-end-session", "session": ALL}, "n_clicks"),
        Input({"type": "admin-revoke", "token": ALL}, "n_clicks"),
        State("admin-user", "data"),
        State("admin-role", "value"),
        State("admin-changed", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(act_on_user, ctx))
