"""Login and logout routes on the dashboard's Flask server (plain HTML forms, no script).

The session cookie is HttpOnly and SameSite=Strict (a cross-site request carries no session, so
callbacks need no CSRF token); only its SHA-256 is stored (dashboards/accounts.py).
"""

from __future__ import annotations

import hmac
import html
import secrets

import flask

from dashboards import accounts
from dashboards.auth import LOGIN_WINDOW_S, SESSION_COOKIE, SESSION_MAX_S, User
from dashboards.context import AppContext
from dashboards.i18n import normalise_language, t
from dashboards.queries import DatabaseUnavailable

LOGIN_CSRF_COOKIE = "cityops_login_csrf"


def render_login_page(lang: str, message: str = "", username: str = "", csrf: str = "") -> str:
    e = html.escape
    note = f'<p class="msg-error" role="alert">{e(message)}</p>' if message else ""
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
        response = flask.make_response(render_login_page(lang, message, username, token), status)
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
