"""Login and logout routes on the dashboard's Flask server (plain HTML forms, no script).

The session cookie is HttpOnly and SameSite=Strict (a cross-site request carries no session, so
callbacks need no CSRF token); only its SHA-256 is stored (dashboards/accounts.py). With
``CITYOPS_OIDC_ISSUER`` set, ``/oidc/login`` and ``/oidc/callback`` sign users in through the
city's OpenID Connect provider (dashboards/oidc.py) into the same kind of session.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets

import flask

from dashboards import accounts
from dashboards.auth import LOGIN_WINDOW_S, SESSION_COOKIE, SESSION_MAX_S, User
from dashboards.context import AppContext
from dashboards.i18n import normalise_language, t
from dashboards.oidc import PENDING_TTL_S, OidcError, display_name, map_role, sso_username
from dashboards.queries import DatabaseUnavailable

log = logging.getLogger(__name__)
LOGIN_CSRF_COOKIE = "cityops_login_csrf"
OIDC_COOKIE = "cityops_oidc"  # which pending single sign-on this browser started


def render_login_page(
    lang: str, message: str = "", username: str = "", csrf: str = "", *, sso: bool = False
) -> str:
    e = html.escape
    note = f'<p class="msg-error" role="alert">{e(message)}</p>' if message else ""
    if sso:  # the city's single sign-on first; the local form stays for local accounts
        note += (
            f'<p><a class="action sso-login" id="sso-login" href="/oidc/login?lang={e(lang)}">'
            f"{e(t(lang, 'login.sso'))}</a></p>"
            f'<p class="note">{e(t(lang, "login.or"))}</p>'
        )
    return f"""<!DOCTYPE html>
<html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(t(lang, "login.title"))} · {e(t(lang, "app.title"))}</title>
<link rel="stylesheet" href="/assets/style.css"></head>
<body><main class="panel login-box">
<h2>{e(t(lang, "app.title"))} · {e(t(lang, "login.title"))}</h2>{note}
<form method="post" action="/login?lang={e(lang)}">
<input type="hidden" name="csrf" value="{e(csrf)}">
<label for="username">{e(t(lang, "login.username"))}</label>
<input id="username" name="username" autocomplete="username" value="{e(username)}" required>
<label for="password">{e(t(lang, "login.password"))}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button class="action" id="login-submit" type="submit">{e(t(lang, "login.submit"))}</button>
</form></main></body></html>"""


def client_of(request: flask.Request) -> str:
    return request.remote_addr or "unknown"


def current_user(ctx: AppContext) -> User | None:
    """The signed-in user of the current request (looked up once per request)."""
    if not flask.has_request_context():
        return None
    if "cityops_user" in flask.g:
        return flask.g.cityops_user  # type: ignore[no-any-return]
    token = flask.request.cookies.get(SESSION_COOKIE)
    user = None
    if token and len(token) < 200:
        try:
            with ctx.writer.connection() as conn:
                user = accounts.read_session_user(conn, token, ctx.clock())
        except DatabaseUnavailable:
            user = None
    flask.g.cityops_user = user
    return user


def install_login_routes(server: flask.Flask, ctx: AppContext) -> None:
    def lang_of() -> str:
        return normalise_language(flask.request.args.get("lang") or ctx.settings.language)

    def page(lang: str, message: str = "", username: str = "", status: int = 200):
        """The form with a fresh anti-forgery token (double submit: cookie and hidden field),
        so another site cannot log a browser in to an account of its choosing."""
        token = secrets.token_urlsafe(24)
        body = render_login_page(lang, message, username, token, sso=ctx.oidc is not None)
        response = flask.make_response(body, status)
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            samesite="Strict",
            secure=flask.request.is_secure,
            path="/login",
        )
        return response

    @server.route("/login", methods=["GET", "POST"])
    def login_view():
        lang = lang_of()
        if flask.request.method == "GET":
            return page(lang)
        sent = flask.request.form.get("csrf", "")
        kept = flask.request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not sent or not kept or not hmac.compare_digest(sent, kept):
            return page(lang, t(lang, "login.expired"), status=400)
        username = flask.request.form.get("username", "")[:64]
        password = flask.request.form.get("password", "")[:1024]
        try:
            with ctx.writer.connection() as conn:
                token, outcome = accounts.login(
                    conn, username, password, client_of(flask.request), ctx.clock()
                )
        except DatabaseUnavailable:
            return page(lang, t(lang, "banner.db_down"), username, 503)
        if token is None:
            message = (
                t(lang, "login.limited", minutes=LOGIN_WINDOW_S // 60)
                if outcome == "limited"
                else t(lang, "login.failed")
            )
            return page(lang, message, username, 429 if outcome == "limited" else 401)
        return signed_in(token)

    def signed_in(token: str):
        response = flask.redirect("/alerts", code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_MAX_S,
            httponly=True,
            samesite="Strict",
            secure=flask.request.is_secure,
            path="/",
        )
        return response

    if ctx.oidc is not None:
        _install_oidc_routes(server, ctx, lang_of, page, signed_in)

    @server.route("/logout")
    def logout_view():
        token = flask.request.cookies.get(SESSION_COOKIE)
        if token:
            try:
                with ctx.writer.connection() as conn:
                    accounts.logout(conn, token, ctx.clock(), client_of(flask.request))
            except DatabaseUnavailable:
                pass
        response = flask.redirect("/", code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _install_oidc_routes(server: flask.Flask, ctx: AppContext, lang_of, page, signed_in) -> None:
    """``/oidc/login`` sends the browser to the provider; ``/oidc/callback`` takes its answer,
    checks it (dashboards.oidc: state, PKCE, id_token signature, issuer, audience, nonce),
    maps the role claim and opens a session. Every failure is audited and counted per client
    (the same limit as password logins), and shown on the login page."""
    client = ctx.oidc

    @server.route("/oidc/login")
    def oidc_login():
        lang = lang_of()
        redirect_url = flask.request.host_url.rstrip("/") + "/oidc/callback"
        try:
            url, cookie = client.begin(redirect_url, lang)
        except OidcError as exc:
            log.warning("single sign-on unavailable: %s", exc)
            return page(lang, t(lang, "login.sso_unavailable"), status=503)
        response = flask.redirect(url, code=303)
        # Lax, not Strict: the provider's redirect back is a cross-site navigation
        response.set_cookie(
            OIDC_COOKIE,
            cookie,
            max_age=int(PENDING_TTL_S),
            httponly=True,
            samesite="Lax",
            secure=flask.request.is_secure,
            path="/oidc",
        )
        return response

    @server.route("/oidc/callback")
    def oidc_callback():
        who = client_of(flask.request)
        pending = client.pending.take(flask.request.cookies.get(OIDC_COOKIE))
        lang = pending.lang if pending else lang_of()
        now = ctx.clock()

        def refuse(reason: str, message: str, status: int, **detail: str):
            try:
                with ctx.writer.connection() as conn:
                    accounts.record_sso_failure(
                        conn,
                        who,
                        now,
                        reason,
                        detail.pop("username", accounts.SSO_ATTEMPT_NAME),
                        detail,
                    )
            except DatabaseUnavailable:
                pass
            response = page(lang, message, status=status)
            response.delete_cookie(OIDC_COOKIE, path="/oidc")
            return response

        try:
            with ctx.writer.connection() as conn:
                limited = accounts.sso_limited(conn, who, now)
        except DatabaseUnavailable:
            return page(lang, t(lang, "banner.db_down"), status=503)
        if limited:
            return page(lang, t(lang, "login.limited", minutes=LOGIN_WINDOW_S // 60), status=429)
        if pending is None:  # not started here, expired, or already used
            return refuse("no_pending_login", t(lang, "login.expired"), 400)
        try:
            claims = client.finish(pending, flask.request.args)
        except OidcError as exc:
            log.warning("single sign-on refused: %s", exc)
            unavailable = exc.reason in ("provider_unreachable", "bad_discovery")
            message = (
                t(lang, "login.sso_unavailable")
                if unavailable
                else t(lang, "login.sso_failed", reason=exc.reason)
            )
            return refuse(exc.reason, message, 503 if unavailable else 401)
        try:
            username = sso_username(claims, client.config)
        except OidcError as exc:
            return refuse(exc.reason, t(lang, "login.sso_failed", reason=exc.reason), 401)
        role = map_role(claims, client.config)
        if role is None:
            return refuse(
                "no_role", t(lang, "login.sso_no_role"), 403, username=username, sub=claims["sub"]
            )
        try:
            with ctx.writer.connection() as conn:
                token, outcome = accounts.login_sso(
                    conn,
                    username,
                    display_name(claims),
                    role,
                    client.config.issuer,
                    claims["sub"],
                    who,
                    now,
                )
        except DatabaseUnavailable:
            return page(lang, t(lang, "banner.db_down"), status=503)
        if token is None:
            key = "login.sso_disabled" if outcome == "disabled" else "login.sso_failed"
            response = page(lang, t(lang, key, reason=outcome), status=403)
            response.delete_cookie(OIDC_COOKIE, path="/oidc")
            return response
        response = signed_in(token)
        response.delete_cookie(OIDC_COOKIE, path="/oidc")
        return response
