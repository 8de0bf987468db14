"""The doors of the dashboard's Flask server, for every request (decision 0045):

* who the client is and whether it came over TLS, believing ``X-Forwarded-*`` only from
  ``CITYOPS_TRUSTED_PROXIES`` (``dashboards.security.client_address``);
* every state-changing request (POST, PUT, PATCH, DELETE: Dash callbacks, the login form,
  logout) must come from one of our pages (``Origin``, else ``Referer``, equal to this host)
  and carry the session's anti-forgery token (header ``X-CSRF-Token``, which Dash's renderer
  sends from the ``cityops_csrf`` cookie, or the form field ``csrf``); otherwise 403, audited;
* every callback call is checked against what its page declared it needs (role, signed in, or
  open) before Dash runs it: 401 for nobody signed in, 403 for a role without the permission
  or a callback nobody declared;
* security headers, no caching of pages and callbacks, a body limit (413), and no stack trace
  in any answer (500 with a plain message; the trace goes to the log).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from access.auth import PERMISSIONS, SESSION_COOKIE, csrf_token
from dashboards.queries import DatabaseUnavailable
from dashboards.security import (
    PUBLIC,
    Access,
    ProxyNet,
    client_address,
    forwarded_value,
    is_trusted,
    refusal,
    same_origin,
)

log = logging.getLogger(__name__)

CSRF_COOKIE = "cityops_csrf"  # readable by our pages' script (Dash sends it back as a header)
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"  # in plain HTML forms (login, logout)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_BODY_BYTES = 4 * 1024 * 1024  # a callback is a few KiB, a planner's lasso polygon more
CALLBACK_PATH = "/_dash-update-component"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


@dataclass(frozen=True, slots=True)
class Door:
    """Who came in: the client's address, whether over TLS (here or at a trusted proxy), and
    the scheme and host the browser used (for the Origin check)."""

    client: str
    secure: bool
    scheme: str
    host: str


def door(proxies: Sequence[ProxyNet]) -> Door:
    """The current request's Door (worked out once per request)."""
    if "cityops_door" in flask.g:
        return flask.g.cityops_door  # type: ignore[no-any-return]
    request = flask.request
    peer = request.environ.get("REMOTE_ADDR") or "unknown"
    headers = request.headers
    proto = forwarded_value(peer, headers.getlist("X-Forwarded-Proto"), proxies)
    host = forwarded_value(peer, headers.getlist("X-Forwarded-Host"), proxies)
    secure = request.is_secure or proto == "https"
    found = Door(
        client=client_address(peer, headers.getlist("X-Forwarded-For"), proxies)[:64],
        secure=secure,
        scheme="https" if secure else "http",
        host=host or request.host,
    )
    flask.g.cityops_door = found
    return found


def trusted_peer(proxies: Sequence[ProxyNet]) -> bool:
    return is_trusted(flask.request.environ.get("REMOTE_ADDR") or "", proxies)


# -- anti-forgery tokens ------------------------------------------------------------------------
def expected_csrf() -> str | None:
    """The token this request must carry: derived from the session cookie when there is one,
    else the random one of the ``cityops_csrf`` cookie (a visitor without a session)."""
    session = flask.request.cookies.get(SESSION_COOKIE)
    if session and len(session) < 200:
        return csrf_token(session)
    kept = flask.request.cookies.get(CSRF_COOKIE, "")
    return kept if _TOKEN_RE.match(kept) else None


def response_csrf() -> str:
    """The token the response leaves in the browser (and a form on the page carries): the
    expected one, or a new random one for a visitor who has none yet."""
    if "cityops_csrf" not in flask.g:
        flask.g.cityops_csrf = expected_csrf() or secrets.token_urlsafe(32)
    return flask.g.cityops_csrf  # type: ignore[no-any-return]


def set_csrf_cookie(response: flask.Response, token: str, *, secure: bool) -> None:
    """Not HttpOnly: our pages' script reads it to send it back (double submit); another site
    can neither read it nor make a browser send the header."""
    response.set_cookie(
        CSRF_COOKIE, token, httponly=False, samesite="Strict", secure=secure, path="/"
    )
    flask.g.cityops_csrf_sent = True


def _sent_csrf() -> str:
    sent = flask.request.headers.get(CSRF_HEADER)
    if sent is None and flask.request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = flask.request.form.get(CSRF_FIELD)
    return sent or ""


def forgery_refusal(proxies: Sequence[ProxyNet]) -> str | None:
    """None when this state-changing request comes from our own page with its token; else
    why not (no_origin, cross_origin, no_token, bad_token)."""
    here = door(proxies)
    reason = same_origin(
        flask.request.headers.get("Origin"),
        flask.request.headers.get("Referer"),
        here.scheme,
        here.host,
    )
    if reason:
        return reason
    expected, sent = expected_csrf(), _sent_csrf()
    if not expected or not sent:
        return "no_token"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return "bad_token"
    return None


# -- the wiring ---------------------------------------------------------------------------------
def install_guard(
    server: flask.Flask,
    ctx: Any,
    proxies: Sequence[ProxyNet],
    policy: Mapping[str, Access],
    headers: Mapping[str, str],
    current_user: Callable[[], Any],
    *,
    form_refused: Callable[[str], Any] | None = None,
) -> None:
    """Check every request before its view runs, and finish every response."""
    server.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @server.before_request
    def _doors():
        request = flask.request
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _refused(413, "too_large")
        if request.method not in UNSAFE_METHODS:
            return None
        reason = forgery_refusal(proxies)
        if reason:
            _audit(ctx, current_user, "csrf_refused", {"reason": reason}, proxies)
            log.warning(
                "refused %s %s from %s: %s", request.method, request.path, door(proxies), reason
            )
            if form_refused is not None and request.path == "/login":
                return form_refused(reason)  # the form again, with a fresh token
            return _refused(403, reason)
        if request.path == CALLBACK_PATH:
            return _check_callback(ctx, proxies, policy, current_user)
        return None

    @server.after_request
    def _finish(response: flask.Response) -> flask.Response:
        for key, value in headers.items():
            response.headers.setdefault(key, value)
        if response.mimetype in ("application/json", "text/html"):
            response.headers.setdefault("Cache-Control", "no-store")
        if not flask.g.get("cityops_csrf_sent"):
            token = response_csrf()
            if flask.request.cookies.get(CSRF_COOKIE) != token:
                set_csrf_cookie(response, token, secure=door(proxies).secure)
        return response

    @server.errorhandler(Exception)
    def _error(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc  # werkzeug's short page for 404, 405, 413 ...: no trace
        log.exception("error answering %s %s", flask.request.method, flask.request.path)
        return _refused(500, "internal_error")


def _check_callback(ctx, proxies, policy, current_user):
    """Refuse a callback call its page does not allow this user (before Dash runs it)."""
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return _refused(400, "not_a_callback")
    output = body["output"]
    changed = body.get("changedPropIds")
    changed = [c for c in changed if isinstance(c, str)] if isinstance(changed, list) else []
    access = policy.get(output)
    if access is not None and (access.need == PUBLIC or not access.applies(changed)):
        return None  # open to anyone: no session lookup for the walls' refreshes
    user = current_user()
    status = refusal(access, changed, getattr(user, "role", None), _role_can)
    if status == 0:
        return None
    if user is not None:  # a signed-in user asking for more than the role gives: audited
        need = access.need if access else "undeclared"
        _audit(ctx, current_user, f"refused:{need}", {"callback": output[:200]}, proxies)
    return _refused(status, "not_signed_in" if status == 401 else "forbidden")


def is_automatic_refresh() -> bool:
    """Whether the current request is a page refreshing itself (a Dash callback fired by a timer
    only), not something its user did (a click, a field, a page opened): such a call must not
    keep an idle session alive, or a page left open would never time out."""
    request = flask.request
    if request.path != CALLBACK_PATH:
        return False
    body = request.get_json(silent=True)
    changed = body.get("changedPropIds") if isinstance(body, dict) else None
    if not isinstance(changed, list):
        return False
    return bool(changed) and all(isinstance(c, str) and c.endswith(".n_intervals") for c in changed)


def _role_can(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, frozenset())


def _refused(status: int, reason: str) -> flask.Response:
    """A short JSON answer (Dash's renderer and scripts read JSON); never a stack trace."""
    response = flask.jsonify({"error": reason, "status": status})
    response.status_code = status
    return response


def _audit(ctx, current_user, action: str, detail: dict, proxies) -> None:
    from access.accounts import record_dashboard_event

    request = flask.request
    try:
        user = current_user()
    except Exception:
        user = None
    actor = getattr(user, "username", None) or "(anonymous)"
    detail = {
        **detail,
        "method": request.method,
        "origin": (request.headers.get("Origin") or "")[:200],
    }
    try:
        with ctx.writer.connection() as conn, conn.transaction():
            record_dashboard_event(
                conn,
                actor,
                action,
                request.path[:200],
                detail,
                now=ctx.clock(),
                client=door(proxies).client,
            )
    except DatabaseUnavailable:
        log.warning("could not audit %s by %s", action, actor)
