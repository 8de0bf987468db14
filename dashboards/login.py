"""Login and logout routes on the dashboard's Flask server (plain HTML forms, no script).

The session cookie is HttpOnly and SameSite=Strict (a cross-site request carries no session, so
callbacks need no CSRF token); only its SHA-256 is stored (access/accounts.py). With
``CITYOPS_OIDC_ISSUER`` set, ``/oidc/login`` and ``/oidc/callback`` sign users in through the
city's OpenID Connect provider (dashboards/oidc.py) into the same kind of session.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
from functools import partial

import flask

from access import accounts
from access.auth import LOGIN_WINDOW_S, SESSION_COOKIE, SESSION_MAX_S, User
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
    """``/login`` and ``/logout``; ``/oidc/login`` and ``/oidc/callback`` with single sign-on."""
    server.add_url_rule("/login", "login_view", partial(login_view, ctx), methods=["GET", "POST"])
    server.add_url_rule("/logout", "logout_view", partial(logout_view, ctx))
    if ctx.oidc is not None:
        server.add_url_rule("/oidc/login", "oidc_login", partial(oidc_login, ctx))
        server.add_url_rule("/oidc/callback", "oidc_callback", partial(oidc_callback, ctx))


def _lang_of(ctx: AppContext) -> str:
    return normalise_language(flask.request.args.get("lang") or ctx.settings.language)


def login_page(ctx: AppContext, lang: str, message: str = "", username: str = "", status=200):
    """The form with a fresh anti-forgery token (double submit: cookie and hidden field),
    so another site cannot log a browser in to an account of its choosing."""
    token = secrets.token_urlsafe(24)
    body = render_login_page(lang, message, username, token, sso=ctx.oidc is not None)
    response = flask.make_response(body, status)
    return _with_cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login")


def _signed_in(token: str):
    """To the alert console, with the new session's cookie."""
    response = flask.redirect("/alerts", code=303)
    return _with_cookie(response, SESSION_COOKIE, token, max_age=SESSION_MAX_S, path="/")


def _with_cookie(response, name: str, value: str, *, max_age: int, path: str, samesite="Strict"):
    """An HttpOnly cookie, Secure when the browser came over TLS."""
    secure = flask.request.is_secure
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite=samesite, secure=secure, path=path
    )
    return response


def login_view(ctx: AppContext):
    """The form (GET), or a password login (POST) checked against the rate limit."""
    lang = _lang_of(ctx)
    if flask.request.method == "GET":
        return login_page(ctx, lang)
    sent = flask.request.form.get("csrf", "")
    kept = flask.request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not kept or not hmac.compare_digest(sent, kept):
        return login_page(ctx, lang, t(lang, "login.expired"), status=400)
    username = flask.request.form.get("username", "")[:64]
    password = flask.request.form.get("password", "")[:1024]
    try:
        with ctx.writer.connection() as conn:
            token, outcome = accounts.login(
                conn, username, password, client_of(flask.request), ctx.clock()
            )
    except DatabaseUnavailable:
        return login_page(ctx, lang, t(lang, "banner.db_down"), username, 503)
    if token is None:
        limited = outcome == "limited"
        message = (
            t(lang, "login.limited", minutes=LOGIN_WINDOW_S // 60)
            if limited
            else t(lang, "login.failed")
        )
        return login_page(ctx, lang, message, username, 429 if limited else 401)
    return _signed_in(token)


def logout_view(ctx: AppContext):
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


# -- single sign-on ----------------------------------------------------------------------------
def oidc_login(ctx: AppContext):
    """To the provider, remembering this browser's pending login in a cookie."""
    lang = _lang_of(ctx)
    redirect_url = flask.request.host_url.rstrip("/") + "/oidc/callback"
    try:
        url, cookie = ctx.oidc.begin(redirect_url, lang)
    except OidcError as exc:
        log.warning("single sign-on unavailable: %s", exc)
        return login_page(ctx, lang, t(lang, "login.sso_unavailable"), status=503)
    response = flask.redirect(url, code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation
    return _with_cookie(
        response, OIDC_COOKIE, cookie, max_age=int(PENDING_TTL_S), path="/oidc", samesite="Lax"
    )


class SsoRefused(Exception):
    """A single sign-on answer that opens no session: why (audited), what the page says
    (a catalogue key) and the HTTP status."""

    def __init__(self, reason: str, message_key: str, status: int, **detail: str) -> None:
        super().__init__(reason)
        self.reason, self.message_key, self.status, self.detail = (
            reason,
            message_key,
            status,
            detail,
        )


def oidc_callback(ctx: AppContext):
    """The provider's answer: checked (dashboards.oidc: state, PKCE, id_token signature,
    issuer, audience, nonce), the role claim mapped, a session opened. Every refusal is audited
    and counted per client (the same limit as password logins), and shown on the login page."""
    who = client_of(flask.request)
    pending = ctx.oidc.pending.take(flask.request.cookies.get(OIDC_COOKIE))
    lang = pending.lang if pending else _lang_of(ctx)
    now = ctx.clock()
    try:
        with ctx.writer.connection() as conn:
            limited = accounts.sso_limited(conn, who, now)
    except DatabaseUnavailable:
        return login_page(ctx, lang, t(lang, "banner.db_down"), status=503)
    if limited:
        return login_page(
            ctx, lang, t(lang, "login.limited", minutes=LOGIN_WINDOW_S // 60), status=429
        )
    try:
        username, role, claims = vouched_identity(ctx.oidc, pending, flask.request.args)
    except SsoRefused as refused:
        _audit_sso_refusal(ctx, who, now, refused)
        message = t(lang, refused.message_key, reason=refused.reason)
        return _forget_pending(login_page(ctx, lang, message, status=refused.status))
    try:
        with ctx.writer.connection() as conn:
            token, outcome = accounts.login_sso(
                conn,
                username,
                display_name(claims),
                role,
                ctx.oidc.config.issuer,
                claims["sub"],
                who,
                now,
            )
    except DatabaseUnavailable:
        return login_page(ctx, lang, t(lang, "banner.db_down"), status=503)
    if token is None:
        key = "login.sso_disabled" if outcome == "disabled" else "login.sso_failed"
        return _forget_pending(login_page(ctx, lang, t(lang, key, reason=outcome), status=403))
    return _forget_pending(_signed_in(token))


def vouched_identity(client, pending, args) -> tuple[str, str, dict]:
    """(account name, role, claims) from the provider's answer ``args`` to the login
    ``pending``; SsoRefused saying why not."""
    if pending is None:  # not started here, expired, or already used
        raise SsoRefused("no_pending_login", "login.expired", 400)
    try:
        claims = client.finish(pending, args)
    except OidcError as exc:
        log.warning("single sign-on refused: %s", exc)
        if exc.reason in ("provider_unreachable", "bad_discovery"):
            raise SsoRefused(exc.reason, "login.sso_unavailable", 503) from None
        raise SsoRefused(exc.reason, "login.sso_failed", 401) from None
    try:
        username = sso_username(claims, client.config)
    except OidcError as exc:
        raise SsoRefused(exc.reason, "login.sso_failed", 401) from None
    role = map_role(claims, client.config)
    if role is None:
        raise SsoRefused("no_role", "login.sso_no_role", 403, username=username, sub=claims["sub"])
    return username, role, claims


def _audit_sso_refusal(ctx: AppContext, who: str, now, refused: SsoRefused) -> None:
    detail = dict(refused.detail)
    username = detail.pop("username", accounts.SSO_ATTEMPT_NAME)
    try:
        with ctx.writer.connection() as conn:
            accounts.record_sso_failure(conn, who, now, refused.reason, username, detail)
    except DatabaseUnavailable:
        pass


def _forget_pending(response):
    """The pending login is used up (or refused): its cookie goes."""
    response.delete_cookie(OIDC_COOKIE, path="/oidc")
    return response
