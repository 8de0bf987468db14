"""The dashboard's doors over real HTTP against a real `cityops dashboard` process (decision
0045): forged and cross-origin requests, every callback replayed as every role, the login
limit under parallel attempts and from several addresses, trusted proxies, security headers,
errors without traces, body limits."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from access.auth import LOGIN_MAX_FAILURES_PER_USER, csrf_token
from dashboards.app import build_app
from tests.dashboards.conftest import dashboard_settings, start_dashboard, stop_dashboard
from tests.dashboards.helpers import (
    bind_client,
    callback_body,
    csrf_of,
    dependency_body,
    http_login,
    new_client,
    post_form,
    post_json,
    status_of,
)

pytestmark = pytest.mark.browser

ROLE_USERS = {
    "operator": "wang.fang",
    "planner": "li.na",
    "emergency": "zhang.wei",
    "admin": "zhou.min",
}


def audit_rows(db: str, action: str, since: int = 0) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT username, client, detail FROM dashboard_audit WHERE action = %s AND id > %s"
            " ORDER BY id",
            (action, since),
        ).fetchall()


def last_audit_id(db: str) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM dashboard_audit").fetchone()[0]


def forget_guard(db: str, *clients: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("DELETE FROM dashboard_login_guard WHERE client = ANY(%s)", (list(clients),))


ACK = {
    "alerts-ack.n_clicks": 1,
    "alerts-selected.data": 10**9,  # no such alert: an allowed call fails harmlessly
    "alerts-comment.value": "doors",
    "alerts-changed.data": 0,
    "lang.data": "en",
}


# -- forged requests ---------------------------------------------------------------------------
def test_cross_origin_and_tokenless_posts_are_refused(dash_server, dash_db, users):
    base = dash_server.url
    opener = http_login(base, "zhang.wei", users["zhang.wei"])  # a valid session cookie
    body = callback_body(opener, base, "alerts-ack", ACK, "alerts-ack.n_clicks")
    path = "/_dash-update-component"
    since = last_audit_id(dash_db)

    def status(**kw) -> int:
        return status_of(lambda: post_json(opener, base, path, body, **kw))

    assert status() == 200  # as our page sends it: same origin, the session's token
    assert status(origin="http://evil.example") == 403  # another site, cookie and all
    assert status(origin="null") == 403  # a sandboxed frame or a redirect says null
    assert status(origin=None) == 403  # neither Origin nor Referer
    assert status(token=False) == 403  # no token
    assert status(token="x" * 64) == 403  # a wrong one
    # the random token of a visitor without a session is not this session's token
    assert status(token=new_client_token(base)) == 403
    assert csrf_of(opener, base) == csrf_token(session_of(opener))  # derived from the session
    refused = audit_rows(dash_db, "csrf_refused", since)
    reasons = [r[2]["reason"] for r in refused]
    assert reasons == [
        "cross_origin",
        "no_origin",  # null is no origin: then only a Referer of ours would do
        "no_origin",
        "no_token",
        "bad_token",
        "bad_token",
    ]
    assert {r[0] for r in refused} == {"zhang.wei"}
    assert refused[0][2]["origin"] == "http://evil.example"

    # a Referer of ours stands in for a missing Origin; another site's does not
    def referer(url: str) -> int:
        headers = {
            "Content-Type": "application/json",
            "Referer": url,
            "X-CSRF-Token": csrf_of(opener, base),
        }
        req = urllib.request.Request(base + path, json.dumps(body).encode(), headers)
        return status_of(lambda: opener.open(req, timeout=30))

    assert referer(base + "/alerts") == 200
    assert referer("http://evil.example/alerts") == 403

    # the login form and logout are checked the same way
    assert (
        post_form(new_client(), base, "/login", {"username": "a", "password": "b"}, token=False)
        == 403
    )
    assert (
        post_form(
            new_client(),
            base,
            "/login",
            {"username": "a", "password": "b"},
            origin="http://evil.example",
        )
        == 403
    )
    assert post_form(opener, base, "/logout", {}, token=False) == 403
    assert status() == 200  # still signed in


def new_client_token(base: str) -> str:
    return csrf_of(new_client(), base)


def session_of(opener) -> str:
    return next(c.value for c in opener.jar if c.name == "cityops_session")


# -- every callback, every role ----------------------------------------------------------------
def test_every_callback_is_checked_on_the_server_for_every_role(dash_server, users):
    """Replays each callback of the app's callback map as anonymous and as each role: the
    server answers exactly as the page declared (401 anonymous, 403 a role without the
    permission), and every callback has a declaration."""
    base = dash_server.url
    app = build_app(dash_server.settings)
    policy = app.server.config["CITYOPS_CALLBACK_ACCESS"]
    assert set(policy) == set(app.callback_map)  # nothing undeclared
    clients = {"anonymous": new_client()}
    clients |= {role: http_login(base, name, users[name]) for role, name in ROLE_USERS.items()}
    with clients["anonymous"].open(base + "/_dash-dependencies", timeout=10) as resp:
        deps = {d["output"]: d for d in json.loads(resp.read())}
    server_side = [k for k in app.callback_map if k in deps]
    assert len(server_side) >= 20
    from access.auth import PERMISSIONS

    seen = {}
    for output in server_side:
        access, dep = policy[output], deps[output]
        changed = access.triggers[0] if access.triggers else _first_input(dep)
        values = {changed: 1, "lang.data": "en"}
        body = dependency_body(dep, values, changed)
        for who, client in clients.items():
            got = status_of(
                lambda c=client, b=body: post_json(c, base, "/_dash-update-component", b)
            )
            if access.need == "public":
                expected_refused = None
            elif who == "anonymous":
                expected_refused = 401
            elif access.need == "signed_in" or who in PERMISSIONS[access.need]:
                expected_refused = None
            else:
                expected_refused = 403
            if expected_refused:
                assert got == expected_refused, (output, who, got)
            else:
                assert got not in (401, 403), (output, who, got)
            seen[(output, who)] = got
    admin_only = [o for o in server_side if policy[o].need == "users.manage"]
    assert len(admin_only) >= 4
    for output in admin_only:  # the admin page's callbacks: only an admin gets through
        assert [seen[(output, w)] for w in ("anonymous", "operator", "planner", "emergency")] == [
            401,
            403,
            403,
            403,
        ]
        assert seen[(output, "admin")] not in (401, 403)
    # an undeclared callback (not in the map) is refused, not run
    body = {
        "output": "made-up.children",
        "outputs": {"id": "made-up", "property": "children"},
        "inputs": [],
        "changedPropIds": [],
    }
    assert (
        status_of(lambda: post_json(clients["admin"], base, "/_dash-update-component", body)) == 403
    )


def _first_input(dep: dict) -> str:
    first = dep["inputs"][0]
    return f"{first['id']}.{first['property']}"


def test_a_low_role_replaying_an_admin_callback_is_refused_and_audited(dash_server, dash_db, users):
    base = dash_server.url
    since = last_audit_id(dash_db)
    operator = http_login(base, "wang.fang", users["wang.fang"])
    values = {
        "admin-create.n_clicks": 1,
        "admin-new-username.value": "mallory",
        "admin-new-role.value": "admin",
        "admin-new-password.value": "Mallory-admin-2026!",
    }
    body = callback_body(operator, base, "admin-create", values, "admin-create.n_clicks")
    assert status_of(lambda: post_json(operator, base, "/_dash-update-component", body)) == 403
    with psycopg.connect(dash_db) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM dashboard_users WHERE username = 'mallory'"
            ).fetchone()[0]
            == 0
        )
    refused = audit_rows(dash_db, "refused:users.manage", since)
    assert [r[0] for r in refused] == ["wang.fang"]


# -- the login limit ----------------------------------------------------------------------------
def test_parallel_wrong_passwords_check_at_most_the_limit(dash_server, dash_db, users):
    base, source = dash_server.url, "127.0.0.31"
    forget_guard(dash_db, source)
    since = last_audit_id(dash_db)
    clients = [bind_client(source) for _ in range(16)]
    forms = [
        (c, {"username": "li.na", "password": f"wrong-{i}"}, login_token_of(c, base))
        for i, c in enumerate(clients)
    ]

    def attempt(item) -> tuple[int, float]:
        client, form, token = item
        started = time.perf_counter()
        status = post_form(client, base, "/login", form, token=token)
        return status, time.perf_counter() - started

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(attempt, forms))
    statuses = sorted(s for s, _ in answers)
    checked = audit_rows(dash_db, "login_failed", since)
    limited = audit_rows(dash_db, "login_limited", since)
    assert statuses == [401] * LOGIN_MAX_FAILURES_PER_USER + [429] * 11, statuses
    assert len(checked) == LOGIN_MAX_FAILURES_PER_USER  # argon2 ran 5 times, not 16
    assert len(limited) == 11 and {r[1] for r in checked + limited} == {source}
    latencies = sorted(t for _s, t in answers)
    print(
        f"16 parallel wrong passwords: {len(checked)} checked, {len(limited)} refused unchecked;"
        f" median {1000 * latencies[8]:.0f} ms, slowest {1000 * latencies[-1]:.0f} ms"
    )
    # the right password from here waits for the back-off too
    assert (
        post_form(
            bind_client(source), base, "/login", {"username": "li.na", "password": users["li.na"]}
        )
        == 429
    )
    forget_guard(dash_db, source)


def login_token_of(client, base: str) -> str:
    from tests.dashboards.helpers import login_token

    return login_token(client, base)


def test_an_attacker_elsewhere_does_not_lock_the_admin_out(dash_server, dash_db, users):
    """Many failures for the admin from address A back off A only: the admin with the right
    password from address B logs in; A cannot even try other names after 30 failures."""
    base, attacker, admin_ip = dash_server.url, "127.0.0.41", "127.0.0.42"
    forget_guard(dash_db, attacker, admin_ip)
    bad = bind_client(attacker)
    statuses = [
        post_form(bad, base, "/login", {"username": name, "password": "guess-123456"})
        for name in ["zhou.min"] * 8 + [f"user{i}" for i in range(40)]
    ]
    assert statuses[:5] == [401] * 5 and set(statuses[5:8]) == {429}  # zhou.min from A
    assert statuses.count(401) == 30 and statuses[-1] == 429  # then A itself backs off
    admin = bind_client(admin_ip)
    assert (
        post_form(admin, base, "/login", {"username": "zhou.min", "password": users["zhou.min"]})
        == 200
    )
    assert any(c.name == "cityops_session" for c in admin.jar)
    forget_guard(dash_db, attacker, admin_ip)


# -- headers, errors, limits ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/", "/alerts", "/login", "/_dash-layout", "/assets/style.css", "/nowhere"]
)
def test_security_headers_on_every_response(dash_server, path):
    status = None
    try:
        resp = urllib_open(dash_server.url + path)
        status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as err:
        status, headers = err.code, err.headers
    assert status in (200, 404)
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Server"] == "cityops"


def urllib_open(url: str):
    return urllib.request.urlopen(url, timeout=10)


def test_an_exception_shows_no_trace(dash_server):
    base = dash_server.url
    client = new_client()
    # a callback call Dash cannot even read (inputs must be a list): it raises inside Dash
    body = {
        "output": "lang.data",
        "outputs": {"id": "lang", "property": "data"},
        "inputs": "not a list",
        "state": 7,
        "changedPropIds": ["url.search"],
    }
    resp_status, text = _post_raw(client, base, body)
    assert resp_status == 500
    assert json.loads(text) == {"error": "internal_error", "status": 500}
    assert "Traceback" not in text and 'File "' not in text
    assert "Traceback" in dash_server.log_path.read_text(errors="replace")  # the log has it


def _post_raw(client, base: str, body: dict) -> tuple[int, str]:
    try:
        with post_json(client, base, "/_dash-update-component", body) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_an_oversized_body_gets_413(dash_server):
    base = dash_server.url
    client = new_client()
    token = csrf_of(client, base)
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    big = b'{"output": "lang.data", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    conn.request(
        "POST",
        "/_dash-update-component",
        body=big,
        headers={
            "Content-Type": "application/json",
            "Origin": base,
            "X-CSRF-Token": token,
            "Cookie": f"cityops_csrf={token}",
        },
    )
    resp = conn.getresponse()
    assert resp.status == 413
    assert b"Traceback" not in resp.read()


# -- behind a trusted proxy ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def proxied_server(stack, dash_db, users, tmp_path_factory) -> Iterator:
    """A dashboard that trusts 127.0.0.1 as its reverse proxy (the tests' other loopback
    addresses are clients that reach it directly)."""
    settings = dashboard_settings(stack, dash_db, trusted_proxies="127.0.0.1")
    server = start_dashboard(settings, tmp_path_factory.mktemp("dashboard-proxied"))
    yield server
    stop_dashboard(server)


def raw_login(base: str, source: str, headers: dict, username: str, password: str):
    """POST the login form from ``source`` with extra ``headers`` (no redirects followed):
    (status, Set-Cookie headers)."""
    client = bind_client(source)
    token = login_token_of(client, base)
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.jar)
    form = urllib.parse.urlencode({"username": username, "password": password, "csrf": token})
    conn.request(
        "POST",
        "/login",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookies,
            "Origin": headers.pop("Origin", base),
            **headers,
        },
    )
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.headers.get_all("Set-Cookie") or []


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(proxied_server, dash_db, users):
    base = proxied_server.url
    forget_guard(dash_db, "127.0.0.51", "203.0.113.5", "203.0.113.9")
    since = last_audit_id(dash_db)
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5", "X-Forwarded-Proto": "https"}
    # straight from a client: its headers are its own words, not believed
    status, cookies = raw_login(
        base,
        "127.0.0.51",
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        "li.na",
        "wrong-password",
    )
    assert status == 401
    # through the proxy: the right-most address the proxy did not add itself (the browser
    # came over TLS to the proxy, so its pages' origin is https)
    tls_origin = "https://" + base.removeprefix("http://")
    status, _ = raw_login(
        base, "127.0.0.1", dict(forwarded, Origin=tls_origin), "li.na", "wrong-password"
    )
    assert status == 401
    failed = audit_rows(dash_db, "login_failed", since)
    assert [r[1] for r in failed] == ["127.0.0.51", "203.0.113.5"]

    # Secure cookies only where the browser came over TLS (the proxy says so)
    status, cookies = raw_login(
        base, "127.0.0.1", dict(forwarded, Origin=tls_origin), "li.na", users["li.na"]
    )
    assert status == 303
    session = next(c for c in cookies if c.startswith("cityops_session="))
    assert "Secure" in session and "HttpOnly" in session and "SameSite=Strict" in session
    assert all("Secure" in c for c in cookies if c.startswith("cityops_csrf="))
    status, cookies = raw_login(
        base, "127.0.0.51", {"X-Forwarded-Proto": "https"}, "li.na", users["li.na"]
    )
    assert status == 303
    session = next(c for c in cookies if c.startswith("cityops_session="))
    assert "Secure" not in session and "HttpOnly" in session
    forget_guard(dash_db, "127.0.0.51", "203.0.113.5", "203.0.113.9")


def test_origin_behind_the_proxy_is_the_public_one(proxied_server, users):
    base = proxied_server.url
    public = {"X-Forwarded-Host": "ops.chengdu.example", "X-Forwarded-Proto": "https"}
    status, _ = raw_login(
        base,
        "127.0.0.1",
        dict(public, Origin="https://ops.chengdu.example"),
        "li.na",
        users["li.na"],
    )
    assert status == 303
    # the proxy's public name is the only origin: the dashboard's own address is another site
    status, _ = raw_login(base, "127.0.0.1", dict(public), "li.na", users["li.na"])
    assert status == 403
    # and a client cannot claim a host by itself
    status, _ = raw_login(
        base,
        "127.0.0.52",
        dict(public, Origin="https://ops.chengdu.example"),
        "li.na",
        users["li.na"],
    )
    assert status == 403
