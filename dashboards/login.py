"""Login and logout routes on the dashboard's Flask server (plain HTML forms, no script).

The session cookie is HttpOnly and SameSite=Strict, Secure behind TLS; only its SHA-256 is
stored (access/accounts.py). Both forms carry the anti-forgery token and are checked by
``dashboards.guard`` like every other state-changing request (Origin and token). With
``CITYOPS_OIDC_ISSUER`` set, ``/oidc/login`` and ``/oidc/callback`` sign users in through the
city's OpenID Connect provider (dashboards/oidc.py) into the same kind of session, and logging
out of such a session also goes to the provider's ``end_session_endpoint`` when it has one.
"""

from __future__ import annotations

import html
import logging
import secrets
from functools import partial
from urllib.parse import urlencode, urlsplit

import flask

from access import accounts
from access.auth import (
    LOGIN_BACKOFF_S,
    SESSION_COOKIE,
    SESSION_MAX_S,
    SSO_PREFIX,
    User,
    csrf_token,
)
from dashboards.context import AppContext
from dashboards.guard import (
    CSRF_FIELD,
    door,
    is_automatic_refresh,
    response_csrf,
    set_csrf_cookie,
)
from dashboards.i18n import normalise_language, t
from dashboards.oidc import PENDING_TTL_S, OidcError, display_name, map_role, sso_username
from dashboards.queries import DatabaseUnavailable

log = logging.getLogger(__name__)
OIDC_COOKIE = "cityops_oidc"  # which pending single sign-on this browser started


HOME_AFTER_LOGIN = "/alerts"
NEXT_FIELD = "next"  # where to go after logging in: a path on this site only
NEXT_MAX = 512


def local_path(value: object) -> str | None:
    """``value`` when it is a path on this site ("/alerts?alert=7"), else None: no scheme or
    host, not "//host" or "/\\host" (browsers read both as another site), no control
    characters, not overlong. The login page sends the user there, so nothing else may pass
    (an open redirect would lend this site's name to a phishing link)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > NEXT_MAX:
        return None
    if value.startswith(("//", "/\\")) or "\\" in value:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def _query(lang: str, next_path: str | None) -> str:
    return urlencode({"lang": lang, **({NEXT_FIELD: next_path} if next_path else {})})


def login_url(lang: str, next_path: object = None) -> str:
    """The login page, asked to come back to ``next_path`` when it is a path on this site."""
    return "/login?" + _query(lang, local_path(next_path))


def _page(lang: str, title: str, body: str, next_path: str | None = None) -> str:
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · {e(t(lang, "app.title"))}</title>
<link rel="stylesheet" href="/assets/style.css"></head>
<body><main class="panel login-box">
<p class="login-lang">{_language_switch(lang, next_path)}</p>
<h2>{e(t(lang, "app.title"))} · {e(title)}</h2>{body}</main></body></html>"""


def _language_switch(lang: str, next_path: str | None = None) -> str:
    """The other language, on the same page (each name in its own language)."""
    if lang == "en":
        href = html.escape("?" + _query("zh", next_path))
        return f'<a id="lang-switch" href="{href}" lang="zh-CN" hreflang="zh-CN">中文</a>'
    href = html.escape("?" + _query("en", next_path))
    return f'<a id="lang-switch" href="{href}" lang="en" hreflang="en">English</a>'


def render_login_page(
    lang: str,
    message: str = "",
    username: str = "",
    csrf: str = "",
    *,
    sso: bool = False,
    next_path: str | None = None,
) -> str:
    """The login form; ``next_path`` (already checked by ``local_path``) is where a successful
    login goes, carried in the form."""
    e = html.escape
    note = f'<p class="msg-error" role="alert">{e(message)}</p>' if message else ""
    if sso:  # the city's single sign-on first; the local form stays for local accounts
        sso_query = _query(lang, next_path)  # back where the user was going, as the form does
        note += (
            f'<p><a class="action sso-login" id="sso-login" href="/oidc/login?{e(sso_query)}">'
            f"{e(t(lang, 'login.sso'))}</a></p>"
            f'<p class="note">{e(t(lang, "login.or"))}</p>'
        )
    back = f'<input type="hidden" name="{NEXT_FIELD}" value="{e(next_path)}">' if next_path else ""
    form = f"""<form method="post" action="/login?lang={e(lang)}">
<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">{back}
<label for="username">{e(t(lang, "login.username"))}</label>
<input id="username" name="username" autocomplete="username" value="{e(username)}" required>
<label for="password">{e(t(lang, "login.password"))}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button class="action" id="login-submit" type="submit">{e(t(lang, "login.submit"))}</button>
</form>"""
    return _page(lang, t(lang, "login.title"), note + form, next_path)


def render_logout_page(lang: str, csrf: str) -> str:
    """A link to /logout lands here: logging out is a POST with the token, like any change."""
    e = html.escape
    form = f"""<form method="post" action="/logout?lang={e(lang)}">
<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">
<button class="action" id="logout-submit" type="submit">{e(t(lang, "nav.logout"))}</button>
</form>"""
    return _page(lang, t(lang, "nav.logout"), form)


def client_of(ctx: AppContext) -> str:
    """The client's address (through a trusted proxy: the address it forwarded)."""
    return door(ctx.proxies).client


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
                user = accounts.read_session_user(
                    conn, token, ctx.clock(), slide=not is_automatic_refresh()
                )
        except DatabaseUnavailable:
            user = None
    flask.g.cityops_user = user
    return user


def install_login_routes(server: flask.Flask, ctx: AppContext) -> None:
    """``/login`` and ``/logout``; ``/oidc/login`` and ``/oidc/callback`` with single sign-on."""
    server.add_url_rule("/login", "login_view", partial(login_view, ctx), methods=["GET", "POST"])
    server.add_url_rule(
        "/logout", "logout_view", partial(logout_view, ctx), methods=["GET", "POST"]
    )
    if ctx.oidc is not None:
        server.add_url_rule("/oidc/login", "oidc_login", partial(oidc_login, ctx))
        server.add_url_rule("/oidc/callback", "oidc_callback", partial(oidc_callback, ctx))


def _lang_of(ctx: AppContext) -> str:
    return normalise_language(flask.request.args.get("lang") or ctx.settings.language)


def login_page(ctx: AppContext, lang: str, message: str = "", username: str = "", status=200):
    """The form with this browser's anti-forgery token (also in its ``cityops_csrf`` cookie),
    so another site cannot log a browser in to an account of its choosing; it carries the
    request's return path when that is a local one."""
    body = render_login_page(
        lang,
        message,
        username,
        response_csrf(),
        sso=ctx.oidc is not None,
        next_path=_next_of_request(),
    )
    return flask.make_response(body, status)


def _next_of_request() -> str | None:
    """The return path the request asks for (form field, else query), if it is local."""
    sent = flask.request.form.get(NEXT_FIELD) or flask.request.args.get(NEXT_FIELD)
    return local_path(sent)


def form_refused(ctx: AppContext, reason: str):
    """What ``dashboards.guard`` answers a login form it refused (an old page, another site)."""
    lang = _lang_of(ctx)
    return login_page(ctx, lang, t(lang, "login.expired"), status=403)


def _signed_in(ctx: AppContext, token: str, target: str | None = None):
    """To ``target`` (a checked local path) or the alert console, with the new session's
    cookie and its anti-forgery token."""
    response = flask.redirect(target or HOME_AFTER_LOGIN, code=303)
    set_csrf_cookie(response, csrf_token(token), secure=door(ctx.proxies).secure)
    return _with_cookie(ctx, response, SESSION_COOKIE, token, max_age=SESSION_MAX_S, path="/")


def _with_cookie(
    ctx: AppContext, response, name: str, value: str, *, max_age: int, path: str, samesite="Strict"
):
    """An HttpOnly cookie, Secure when the browser came over TLS (here or to a trusted proxy
    that says so in ``X-Forwarded-Proto``)."""
    secure = door(ctx.proxies).secure
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite=samesite, secure=secure, path=path
    )
    return response


def login_view(ctx: AppContext):
    """The form (GET), or a password login (POST; its origin and token checked by the guard)
    against the login limit."""
    lang = _lang_of(ctx)
    if flask.request.method == "GET":
        return login_page(ctx, lang)
    username = flask.request.form.get("username", "")[:64]
    password = flask.request.form.get("password", "")[:1024]
    try:
        with ctx.writer.connection() as conn:
            token, outcome = accounts.login(conn, username, password, client_of(ctx), ctx.clock())
    except DatabaseUnavailable:
        return login_page(ctx, lang, t(lang, "banner.db_down"), username, 503)
    if token is None:
        limited = outcome == "limited"
        message = (
            t(lang, "login.limited", minutes=max(1, LOGIN_BACKOFF_S // 60))
            if limited
            else t(lang, "login.failed")
        )
        return login_page(ctx, lang, message, username, 429 if limited else 401)
    return _signed_in(ctx, token, _next_of_request())


def logout_view(ctx: AppContext):
    """GET: a page with the logout button; POST: end the session (and, for a single sign-on
    session, the provider's too when it offers RP-initiated logout)."""
    lang = _lang_of(ctx)
    if flask.request.method == "GET":
        return flask.make_response(render_logout_page(lang, response_csrf()))
    token = flask.request.cookies.get(SESSION_COOKIE)
    user = current_user(ctx)
    if token:
        try:
            with ctx.writer.connection() as conn:
                accounts.logout(conn, token, ctx.clock(), client_of(ctx))
        except DatabaseUnavailable:
            pass
    target = "/"
    if user is not None and user.username.startswith(SSO_PREFIX) and ctx.oidc is not None:
        here = door(ctx.proxies)
        configured = ctx.oidc.config.redirect_url  # the public address behind a TLS proxy
        home = (
            configured.rsplit("/oidc/", 1)[0] + "/"
            if configured
            else f"{here.scheme}://{here.host}/"
        )
        try:
            target = ctx.oidc.logout_url(home) or "/"
        except OidcError as exc:
            log.warning("provider logout unavailable: %s", exc)
    response = flask.redirect(target, code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    # a new random token: the old one was derived from the session that just ended
    set_csrf_cookie(response, secrets.token_urlsafe(32), secure=door(ctx.proxies).secure)
    return response


# -- single sign-on ----------------------------------------------------------------------------
def oidc_login(ctx: AppContext):
    """To the provider, remembering this browser's pending login in a cookie."""
    lang = _lang_of(ctx)
    here = door(ctx.proxies)
    redirect_url = f"{here.scheme}://{here.host}/oidc/callback"
    next_path = local_path(flask.request.args.get(NEXT_FIELD))
    try:
        url, cookie = ctx.oidc.begin(redirect_url, lang, next_path)
    except OidcError as exc:
        log.warning("single sign-on unavailable: %s", exc)
        return login_page(ctx, lang, t(lang, "login.sso_unavailable"), status=503)
    response = flask.redirect(url, code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation
    return _with_cookie(
        ctx, response, OIDC_COOKIE, cookie, max_age=int(PENDING_TTL_S), path="/oidc", samesite="Lax"
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
    who = client_of(ctx)
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
            ctx, lang, t(lang, "login.limited", minutes=max(1, LOGIN_BACKOFF_S // 60)), status=429
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
    return _forget_pending(_signed_in(ctx, token, pending.next_path if pending else None))


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
