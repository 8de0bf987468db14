"""The dashboard shell: builds the Dash app from settings and routes to one module per page.

Nothing happens at import: ``build_app(settings)`` makes the app (no database connection until
a page asks), ``run(settings)`` serves it on ``settings.dashboard_host:dashboard_port``.
All assets are served from this package (no CDN): Dash's own scripts locally, our stylesheet
from ``dashboards/assets``.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

import flask
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash import ctx as dash_ctx

from access.auth import can
from cityops.kernel import web
from cityops.kernel.settings import Settings
from dashboards import queries
from dashboards.components import account, header, loss_what
from dashboards.context import AppContext
from dashboards.guard import CSRF_COOKIE, CSRF_HEADER, install_guard, response_csrf
from dashboards.i18n import LANGUAGES, normalise_language, t
from dashboards.login import current_user, form_refused, install_login_routes, login_url
from dashboards.model import local_time
from dashboards.oidc import OidcClient, OidcConfig
from dashboards.pages import (
    admin,
    alerts,
    dictionary,
    map,
    overview,
    planner,
    sensor,
    trust,
    wall,
)
from dashboards.queries import Reader
from dashboards.security import (
    PUBLIC,
    Access,
    build_csp,
    callback_access,
    origin_of,
    parse_trusted_proxies,
    security_headers,
)

log = logging.getLogger(__name__)
ASSETS = Path(__file__).with_name("assets")


def page_modules() -> tuple[ModuleType, ...]:
    """The pages, in navigation order; each has PATH, NAV_KEY, layout() and register(), and
    may declare ACCESS (what its page and callbacks need; open by default) and CALLBACK_ACCESS
    (component id -> Access for the callbacks writing it)."""
    return (overview, wall, map, sensor, alerts, trust, planner, dictionary, admin)


def page_access(module: ModuleType) -> Access:
    return getattr(module, "ACCESS", Access(PUBLIC))


def build_app(settings: Settings, *, reader: Reader | None = None) -> Dash:
    """The Dash app for ``settings`` (its Flask server is ``app.server``)."""
    oidc_config = OidcConfig.from_settings(settings)  # ValueError: a bad CITYOPS_OIDC_*
    ctx = AppContext(
        settings=settings,
        reader=reader or Reader(settings.database_url),
        writer=Reader(settings.database_url, read_only=False, max_idle=2),
        oidc=OidcClient(oidc_config) if oidc_config else None,
        proxies=parse_trusted_proxies(settings.trusted_proxies),  # ValueError: a bad setting
    )
    ctx.current_user = lambda: current_user(ctx)
    app = Dash(
        __name__,
        title=t(settings.language, "app.title"),
        update_title=None,
        assets_folder=str(ASSETS),
        serve_locally=True,
        suppress_callback_exceptions=True,
        compress=False,
        enable_mcp=False,
        # the renderer sends this cookie's value in this header with every callback (guard.py)
        csrf_token_name=CSRF_COOKIE,
        csrf_header_name=CSRF_HEADER,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.index_string = app.index_string.replace("<html>", f'<html lang="{_html_lang(settings)}">')
    app.layout = shell_layout(settings)
    pages = {m.PATH: m for m in page_modules()}
    app.callback(
        Output("header", "children"),
        Output("page", "children"),
        Output("lang-switch", "children"),
        Output("header-row", "className"),
        Output("header-user", "data"),
        Input("url", "pathname"),
        Input("lang", "data"),
        State("url", "search"),
    )(partial(route, ctx, pages))
    # the header follows the session: when it ends, the logout button becomes a login link
    # that comes back here (before, only the console noticed)
    app.callback(
        Output("header-account", "children"),
        Output("header-user", "data", allow_duplicate=True),
        Input("header-tick", "n_intervals"),
        State("url", "pathname"),
        State("url", "search"),
        State("lang", "data"),
        State("header-user", "data"),
        prevent_initial_call=True,
    )(partial(follow_session, ctx))
    app.callback(
        Output("lang", "data"),
        Input("lang-switch", "n_clicks"),
        Input("url", "search"),
        State("lang", "data"),
    )(switch_language)
    # what each callback needs, from its page's declaration: the shell's two are open
    policy = {key: Access(PUBLIC) for key in app.callback_map}
    for module in pages.values():
        before = set(app.callback_map)
        module.register(app, ctx)
        declared = getattr(module, "CALLBACK_ACCESS", None)
        for key in set(app.callback_map) - before:
            policy[key] = callback_access(key, page_access(module), declared)

    install_heartbeat(app.server, ctx)
    app.server.config["CITYOPS_CONTEXT"] = ctx  # for benchmarks and diagnostics
    app.server.config["CITYOPS_CALLBACK_ACCESS"] = policy  # the tests replay every callback
    install_login_routes(app.server, ctx)
    install_guard(
        app.server,
        ctx,
        ctx.proxies,
        policy,
        security_headers(
            build_csp(
                app.csp_hashes(),
                form_targets=[origin_of(oidc_config.issuer)] if oidc_config else [],
            )
        ),
        ctx.current_user,
        form_refused=partial(form_refused, ctx),
    )
    return app


HEARTBEAT_PATH = "/api/heartbeat"
HEARTBEAT_TTL_S = 1.0  # one database look a second, however many pages ask
# what assets/stale.js says, in every language: it must be able to say so with the server gone
STALE_KEYS = ("stale.server_lost", "stale.db_down", "stale.page_failed")
# ingestion beats every 5 s (ingestion.service.HEARTBEAT_S): two missed, the data path stopped
INGEST_SILENT_AFTER_S = 10.0


def heartbeat_body(ctx: AppContext) -> dict[str, Any]:
    """What a page's watchdog (assets/stale.js) needs every two seconds, in words: whether the
    database answers; what stopped the data, if anything (ingestion silent: nothing reaches the
    database; else the open source loss the alert engine found: the broadest, oldest), and
    whether the figures should be dimmed (the whole stream); its own texts."""
    try:
        ingest, losses = ctx.cache.get("heartbeat", HEARTBEAT_TTL_S, lambda: _read_beat(ctx))
        db = True
    except queries.DatabaseUnavailable:
        ingest, losses, db = None, [], False
    waiting = [x for x in losses if x.back_at is None]
    stream, dim = None, False
    if ingest is not None and ingest[1] > INGEST_SILENT_AFTER_S:
        since = local_time(ingest[0], ctx.tz, "%H:%M:%S")
        stream = {lang: t(lang, "stale.ingest_stopped", since=since) for lang in LANGUAGES}
        dim = True
    elif waiting:
        first = waiting[0]
        since = local_time(first.since, ctx.tz, "%H:%M:%S")
        stream = {
            lang: t(lang, "stale.stream_lost", what=loss_what(lang, first), since=since)
            for lang in LANGUAGES
        }
        dim = first.scope == "stream"
    return {
        "db": db,
        "stream": stream,
        "dim": dim,
        "texts": {lang: {k: t(lang, k) for k in STALE_KEYS} for lang in LANGUAGES},
    }


def _read_beat(ctx: AppContext) -> tuple[Any, list]:
    with ctx.reader.connection() as conn:
        return queries.fetch_ingest_silence(conn), queries.fetch_source_losses(conn)


def install_heartbeat(server: flask.Flask, ctx: AppContext) -> None:
    """``GET /api/heartbeat``, open like the read-only pages (it says no more than they do)."""

    def heartbeat() -> flask.Response:
        return flask.jsonify(heartbeat_body(ctx))

    server.add_url_rule(HEARTBEAT_PATH, "cityops_heartbeat", heartbeat, methods=["GET"])


def shell_layout(settings: Settings) -> html.Div:
    """What every page has: the URL, the language kept in the browser, the header and its
    language switch; the page itself goes into ``page``."""
    switch = html.Button(
        t(settings.language, "lang.switch"), id="lang-switch", className="lang-switch"
    )
    return html.Div(
        [
            dcc.Location(id="url"),
            dcc.Store(id="lang", storage_type="local", data=normalise_language(settings.language)),
            dcc.Store(id="header-user"),  # who the header shows as signed in
            dcc.Interval(id="header-tick", interval=settings.dashboard_refresh_ms),
            html.Div([html.Div(id="header"), switch], id="header-row", className="header-row"),
            html.Div(id="page"),
        ],
        className="app-root",
    )


def route(
    ctx: AppContext,
    pages: dict[str, ModuleType],
    path: str | None,
    lang: str | None,
    search: str | None = None,
):
    """The header and the page for ``path`` in ``lang``, and who the header shows."""
    lang = normalise_language(lang)
    module = pages.get(path or "/")
    user = ctx.current_user()
    if module is None:
        body = html.Div(t(lang, "page.not_found"), className="page empty")
    elif page_allows(page_access(module), user):
        body = module.layout(ctx, lang)
    else:  # the page's own check, on the server: its layout is not even built
        key = "page.need_login" if user is None else "page.forbidden"
        body = html.Div(t(lang, key), className="page empty", id="page-refused")
    kiosk = getattr(module, "KIOSK", False)  # the wall shows no navigation
    username = getattr(user, "username", None)
    return (
        header(
            lang,
            path or "/",
            username,
            csrf=response_csrf(),
            admin=can(user, "users.manage"),
            login_href=login_url(lang, here(path, search)),
        ),
        body,
        t(lang, "lang.switch"),
        "header-row hidden" if kiosk else "header-row",
        username,
    )


def follow_session(
    ctx: AppContext,
    _n: int | None,
    path: str | None,
    search: str | None,
    lang: str | None,
    shown: str | None,
):
    """The header's account again when the session has ended (or another began) since the
    header was drawn; nothing while it is still right (a button redrawn under a finger loses
    the tap). Only a header that shows someone asks the database."""
    if not shown:
        return no_update, no_update
    user = ctx.current_user()
    username = getattr(user, "username", None)
    if username == shown:
        return no_update, no_update
    lang = normalise_language(lang)
    login_href = login_url(lang, here(path, search))
    return account(lang, username, csrf=response_csrf(), login_href=login_href), username


def here(path: str | None, search: str | None) -> str:
    """The current page's path and query: where the login page should come back to."""
    return (path or "/") + (search if isinstance(search, str) and search.startswith("?") else "")


def switch_language(clicks: int | None, search: str | None, lang: str | None):
    """The other language on a click of the switch, or the one the URL asks for."""
    if dash_ctx.triggered_id == "lang-switch" and clicks:
        return "en" if normalise_language(lang) == "zh" else "zh"
    wanted = parse_qs((search or "").lstrip("?")).get("lang", [None])[0]
    if wanted and normalise_language(wanted) == wanted and wanted != lang:
        return wanted  # a kiosk can be pinned to a language by its URL (?lang=en)
    return no_update


def _html_lang(settings: Settings) -> str:
    return "en" if normalise_language(settings.language) == "en" else "zh-CN"


def page_allows(access: Access, user: Any) -> bool:
    if access.need == PUBLIC:
        return True
    if user is None:
        return False
    return access.need == "signed_in" or can(user, access.need)


def make_server(settings: Settings, *, threads: int = web.THREADS) -> Any:
    """The dashboard on the production server, bound to ``dashboard_host:dashboard_port``
    (``cityops.kernel.web``)."""
    app = build_app(settings)
    server = web.make_server(
        app.server, settings.dashboard_host, settings.dashboard_port, threads=threads
    )
    if settings.trusted_proxies.strip():
        # waitress drops every X-Forwarded-* header unless it trusts the peer itself, and it
        # trusts one address at most; our guard believes them from the configured proxies only
        # (dashboards.security.client_address), so it gets them unfiltered
        server.application = app.server
    return server


def run(settings: Settings, *, threads: int = web.THREADS) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM) on waitress, a production WSGI server (not
    Flask's development server)."""
    server = make_server(settings, threads=threads)
    log.info(
        "dashboard on http://%s:%s/ (waitress, %d threads)",
        settings.dashboard_host,
        server.effective_port,
        threads,
    )
    web.serve_until_stopped(server)
