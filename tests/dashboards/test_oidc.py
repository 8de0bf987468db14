"""Single sign-on with the city's OpenID Connect provider, against a real local provider
(tests/dashboards/oidc_provider.py) and a real `cityops dashboard` process: the login in the
browser, defective id_tokens refused, state and code used once, the role claim gating the
callbacks on the server, and local accounts still working."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import psycopg
import pytest
from selenium.webdriver.common.by import By

from cityops.kernel.settings import Settings
from dashboards.oidc import (
    OidcConfig,
    OidcError,
    claim_values,
    map_role,
    parse_discovery,
    parse_role_map,
    sso_username,
    verify_id_token,
)
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.conftest import dashboard_settings, start_dashboard, stop_dashboard
from tests.dashboards.helpers import (
    browser_logout,
    call_callback,
    callback_status,
    http_login,
    http_logout,
    insert_alert,
    open_page,
    page_text,
    wait_for,
)
from tests.dashboards.oidc_provider import TAMPERS, LocalProvider

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("_forget_failures")]

CLIENT_ID, CLIENT_SECRET = "cityops-dashboard", "s3cret:with/odd=chars"
ROLE_MAP = "city-ops-duty=emergency,city-planning=planner,city-ops-viewers=operator"
DUTY = {
    "sub": "u-1001",
    "preferred_username": "Chen.Jing",
    "name": "陈静",
    "groups": ["staff", "city-ops-duty"],
}
PLANNER = {
    "sub": "u-2002",
    "preferred_username": "zhao.lei",
    "name": "赵磊",
    "groups": ["city-planning"],
}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    p = LocalProvider(clients={CLIENT_ID: CLIENT_SECRET}).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def sso_server(stack, dash_db, users, provider, tmp_path_factory):
    """A dashboard process with single sign-on on the session database (local users too)."""
    settings = dashboard_settings(
        stack,
        dash_db,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_role_claim="groups",
        oidc_role_map=ROLE_MAP,
    )
    provider.redirect_uris.add(f"http://127.0.0.1:{settings.dashboard_port}/oidc/callback")
    server = start_dashboard(settings, tmp_path_factory.mktemp("dashboard-sso"))
    yield server
    stop_dashboard(server)


@pytest.fixture(autouse=True)
def _fresh_provider(provider):
    provider.tamper = None
    provider.user = dict(DUTY)
    yield
    provider.tamper = None


@pytest.fixture
def _forget_failures(dash_db):
    """This module's refused sign-ons leave the 15-minute window afterwards: every test client
    is 127.0.0.1, and 30 failures from one address block logins (the whole session's)."""
    yield
    with psycopg.connect(dash_db) as conn:
        conn.execute(
            "UPDATE dashboard_login_attempts SET at = at - interval '1 hour'"
            " WHERE username = '(sso)'"
        )


def http_client():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


def sso_over_http(base: str) -> tuple[int, str, object, http.cookiejar.CookieJar]:
    """The whole redirect dance as a browser does it: (final status, page, opener, cookies)."""
    opener, jar = http_client()
    try:
        with opener.open(base + "/oidc/login?lang=en", timeout=30) as resp:
            return resp.status, resp.read().decode(), opener, jar
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), opener, jar


def audit(db: str, action: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT username, detail FROM dashboard_audit WHERE action = %s ORDER BY id", (action,)
        ).fetchall()


def test_sso_login_in_the_browser(sso_server, dash_db, provider, browser):
    base = sso_server.url
    open_page(browser, base + "/login")
    # the single sign-on link, and the local form next to it
    assert browser.find_element(By.ID, "sso-login").text == "使用城市统一身份认证登录"
    assert browser.find_element(By.ID, "password")
    browser.find_element(By.ID, "sso-login").click()
    wait_for(lambda: "sso.chen.jing" in page_text(browser), what="signed in through the provider")
    assert browser.current_url == base + "/alerts"
    wait_for(
        lambda: "当前用户：sso.chen.jing（应急人员）" in page_text(browser), what="role from claim"
    )
    assert severe_console_messages(browser) == []
    # the provider was asked with PKCE (S256), state and nonce; the code came back once
    asked = provider.requests[-1]
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert len(asked["state"]) >= 40 and len(asked["nonce"]) >= 40
    assert asked["redirect_uri"] == base + "/oidc/callback"
    assert len(provider.token_requests[-1]["code_verifier"]) >= 43
    with psycopg.connect(dash_db) as conn:
        row = conn.execute(
            "SELECT role, display_name, password_hash FROM dashboard_users"
            " WHERE username = 'sso.chen.jing'"
        ).fetchone()
    assert row == ("emergency", "陈静", "!sso")
    user, detail = audit(dash_db, "login_sso")[-1]
    assert user == "sso.chen.jing" and detail == {
        "iss": provider.issuer,
        "sub": "u-1001",
        "role": "emergency",
    }
    browser_logout(browser, base)
    open_page(browser, base + "/alerts")
    wait_for(lambda: "未登录" in page_text(browser), what="signed out")


@pytest.mark.parametrize("tamper", TAMPERS)
def test_defective_id_tokens_are_refused(sso_server, dash_db, provider, tamper):
    provider.tamper = tamper
    before = len(audit(dash_db, "login_sso_failed"))
    status, page, _opener, jar = sso_over_http(sso_server.url)
    assert status == 401, (tamper, status, page)
    assert "Single sign-on did not succeed" in page
    assert not any(c.name == "cityops_session" for c in jar)
    reasons = [d["reason"] for _u, d in audit(dash_db, "login_sso_failed")[before:]]
    expected = {
        "bad_signature": "bad_signature",
        "wrong_nonce": "wrong_nonce",
        "wrong_audience": "wrong_audience",
        "wrong_issuer": "wrong_issuer",
        "expired": "expired",
        "alg_none": "bad_algorithm",
        "alg_hs256": "bad_algorithm",
        "azp_other": "wrong_audience",
    }[tamper]
    assert reasons == [expected]


def test_state_and_code_are_used_once(sso_server, provider):
    base = sso_server.url
    _opener, jar = http_client()

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_a, **_k):
            return None

    stepper = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Stop())

    def location(url: str) -> str:
        try:
            stepper.open(url, timeout=10)
        except urllib.error.HTTPError as err:
            assert err.code in (302, 303), err.code
            return err.headers["Location"]
        raise AssertionError("no redirect")

    def callback(url: str) -> tuple[int, str]:
        try:
            with stepper.open(url, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    # an answer with another state is refused (login CSRF), and the login is spent
    back = location(location(base + "/oidc/login?lang=en"))
    parts = urllib.parse.urlsplit(back)
    args = dict(urllib.parse.parse_qsl(parts.query))
    forged = f"{base}/oidc/callback?code={args['code']}&state=forged"
    status, page = callback(forged)
    assert status == 401 and "wrong_state" in page
    assert callback(back)[0] == 400  # the pending login is gone: nothing to finish

    # the right answer works once; the same answer again is refused
    back = location(location(base + "/oidc/login?lang=en"))
    assert callback(back)[0] == 303  # to /alerts with a session
    assert any(c.name == "cityops_session" for c in jar)
    assert callback(back)[0] == 400
    # a callback this browser never started
    fresh, _jar = http_client()
    with pytest.raises(urllib.error.HTTPError) as err:
        fresh.open(back, timeout=10)
    assert err.value.code == 400


def ack_status(opener, base: str, alert_id: int) -> int:
    return callback_status(
        opener,
        base,
        "alerts-ack",
        {
            "alerts-ack.n_clicks": 1,
            "alerts-selected.data": alert_id,
            "alerts-comment.value": "SSO",
            "alerts-changed.data": 0,
            "lang.data": "en",
        },
        "alerts-ack.n_clicks",
    )


def ack(opener, base: str, alert_id: int) -> str:
    resp = call_callback(
        opener,
        base,
        "alerts-ack",
        {
            "alerts-ack.n_clicks": 1,
            "alerts-selected.data": alert_id,
            "alerts-comment.value": "SSO",
            "alerts-changed.data": 0,
            "lang.data": "en",
        },
        "alerts-ack.n_clicks",
    )
    return json.dumps(resp["response"], ensure_ascii=False)


def test_single_sign_on_comes_back_where_the_user_was_going(sso_server, provider):
    """A user sent to log in from an alert's link (``/login?next=/alerts?alert=7``) who signs in
    through the city's provider lands on that alert, as a password login does; a foreign
    ``next`` is dropped (no open redirect), and the path never travels to the provider."""
    import html as html_module

    base = sso_server.url

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_a, **_k):
            return None

    def arrive(start: str) -> tuple[str, str]:
        """(where the provider was asked to send the browser, where the browser lands)."""
        _opener, jar = http_client()
        stepper = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Stop())
        hops = []
        url = start
        for _ in range(3):  # /oidc/login -> provider -> /oidc/callback -> the page
            try:
                stepper.open(url, timeout=30)
                raise AssertionError(f"no redirect from {url}")
            except urllib.error.HTTPError as err:
                assert err.code in (302, 303), (url, err.code)
                url = urllib.parse.urljoin(url, err.headers["Location"])
                hops.append(url)
        assert any(c.name == "cityops_session" for c in jar)
        return hops[0], hops[-1]

    # the login page's sign-on button carries the path the form carries
    with urllib.request.urlopen(base + "/login?lang=en&next=%2Falerts%3Falert%3D7") as resp:
        page = resp.read().decode()
    button = re.search(r'id="sso-login" href="([^"]+)"', page)
    assert button, page
    start = urllib.parse.urljoin(base, html_module.unescape(button.group(1)))
    to_provider, landed = arrive(start)
    assert landed == base + "/alerts?alert=7"
    assert "alert=7" not in urllib.parse.unquote(urllib.parse.unquote(to_provider))
    # a foreign place is not followed: the console, as without one
    _, landed = arrive(base + "/oidc/login?lang=en&next=%2F%2Fevil.example%2Fx")
    assert landed == base + "/alerts"


def test_role_claim_gates_the_callbacks(sso_server, dash_db, provider):
    base = sso_server.url
    alert_id = insert_alert(
        dash_db, "pb-510114-1", "voltage", "high", "major", 10800, 10700, "电压偏高", "Voltage high"
    )

    def state() -> tuple[str, str | None]:
        with psycopg.connect(dash_db) as conn:
            return conn.execute(
                "SELECT state, acknowledged_by FROM alerts WHERE alert_id = %s", (alert_id,)
            ).fetchone()

    # a planner by the claim: signed in, but the server refuses the action
    provider.user = dict(PLANNER)
    status, _page, opener, _jar = sso_over_http(base)
    assert status == 200
    assert ack_status(opener, base, alert_id) == 403  # refused before the callback runs
    assert state() == ("open", None)
    # no mapped role at all: no session
    provider.user = {**PLANNER, "sub": "u-3003", "preferred_username": "wu.min", "groups": ["x"]}
    status, page, _opener, jar = sso_over_http(base)
    assert status == 403 and "no role in this system" in page
    assert not any(c.name == "cityops_session" for c in jar)
    # the duty officer's group maps to emergency: the same call acknowledges it
    provider.user = dict(DUTY)
    status, _page, opener, _jar = sso_over_http(base)
    assert status == 200
    assert "Done: Acknowledge" in ack(opener, base, alert_id)
    assert state() == ("acknowledged", "sso.chen.jing")
    # the claim is read at every login: moved to planning, the next session cannot act
    provider.user = {**DUTY, "groups": ["city-planning"]}
    _status, _page, opener, _jar = sso_over_http(base)
    assert ack_status(opener, base, alert_id) == 403


def test_an_sso_name_stays_with_its_subject(sso_server, dash_db, provider):
    provider.user = {**DUTY, "sub": "someone-else"}  # same preferred_username, other person
    status, _page, _opener, jar = sso_over_http(sso_server.url)
    assert status == 403 and not any(c.name == "cityops_session" for c in jar)
    assert audit(dash_db, "login_sso_failed")[-1][1]["reason"] == "taken"


def test_local_accounts_still_log_in(sso_server, users):
    opener = http_login(sso_server.url, "zhang.wei", users["zhang.wei"])
    answer = ack(opener, sso_server.url, 10**9)  # signed in and allowed; no such alert
    assert "Failed" in answer and "Not allowed" not in answer and "Log in" not in answer


def test_failed_sign_ons_are_limited_per_client(sso_server, dash_db, provider):
    with psycopg.connect(dash_db) as conn:
        conn.execute("DELETE FROM dashboard_login_guard WHERE client = '127.0.0.1'")
        # 29 failures already (their last one now): one more starts the back-off
        conn.execute(
            "INSERT INTO dashboard_login_guard (username, client, failures, last_at)"
            " VALUES ('*', '127.0.0.1', 29, now())"
        )
    try:
        provider.tamper = "bad_signature"  # the 30th failure from this address
        status, _page, _opener, _jar = sso_over_http(sso_server.url)
        assert status == 401
        provider.tamper = None  # now even a good answer is refused, unchecked
        status, page, _opener, jar = sso_over_http(sso_server.url)
        assert status == 429 and "Too many attempts" in page
        assert not any(c.name == "cityops_session" for c in jar)
    finally:
        with psycopg.connect(dash_db) as conn:
            conn.execute("DELETE FROM dashboard_login_guard WHERE client = '127.0.0.1'")


def test_sso_logout_ends_the_session_here_and_at_the_provider(sso_server, dash_db, provider):
    base = sso_server.url
    status, _page, opener, jar = sso_over_http(base)
    assert status == 200 and any(c.name == "cityops_session" for c in jar)
    with psycopg.connect(dash_db) as conn:
        lifetime = conn.execute(
            "SELECT expires_at - created_at FROM dashboard_sessions"
            " WHERE username = 'sso.chen.jing' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()[0]
    assert lifetime.total_seconds() == 3600  # the same idle timeout as a password login
    before = len(provider.logouts)
    assert http_logout(opener, base) == 200  # followed to the provider's end_session_endpoint
    assert len(provider.logouts) == before + 1
    assert provider.logouts[-1] == {
        "client_id": CLIENT_ID,
        "post_logout_redirect_uri": base + "/",
    }
    assert not any(c.name == "cityops_session" for c in jar)
    assert ack_status(opener, base, 10**9) == 401  # the session is gone here


def test_provider_down_is_a_message(stack, dash_db, tmp_path):
    settings = dashboard_settings(
        stack, dash_db, oidc_issuer="http://127.0.0.1:9", oidc_client_id=CLIENT_ID
    )
    server = start_dashboard(settings, tmp_path)
    try:
        status, page, _opener, _jar = sso_over_http(server.url)
    finally:
        stop_dashboard(server)
    assert status == 503 and "cannot be reached" in page


def test_a_bad_oidc_setting_stops_the_dashboard_with_a_message(stack, dash_db):
    from tests.conftest import run_cityops

    settings = dashboard_settings(
        stack, dash_db, oidc_issuer="http://sso.example.gov.cn", oidc_client_id=CLIENT_ID
    )
    done = run_cityops(settings, "dashboard", timeout=60)
    assert done.returncode == 2
    assert "CITYOPS_OIDC_ISSUER must be an https:// URL" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


# -- the pure parts ------------------------------------------------------------------------------
def _config(**over) -> OidcConfig:
    base = {
        "oidc_issuer": "https://sso.chengdu.example/realms/city/",
        "oidc_client_id": "cityops",
        "oidc_client_secret": "",
        "oidc_redirect_url": "",
        "oidc_scopes": "openid profile",
        "oidc_role_claim": "realm_access.roles",
        "oidc_role_map": "",
        "oidc_default_role": "",
        "oidc_username_claim": "preferred_username",
    }
    return OidcConfig.from_settings(SimpleNamespace(**{**base, **over}))


def test_configuration_is_checked():
    assert OidcConfig.from_settings(Settings()) is None  # off by default
    assert _config().issuer == "https://sso.chengdu.example/realms/city"
    for bad, reason in (
        ({"oidc_issuer": "http://sso.chengdu.example"}, "https://"),
        ({"oidc_client_id": ""}, "CLIENT_ID"),
        ({"oidc_scopes": "profile"}, "openid"),
        ({"oidc_default_role": "root"}, "DEFAULT_ROLE"),
        ({"oidc_role_map": "ops=superuser"}, "ROLE_MAP"),
        ({"oidc_role_map": "admin"}, "ROLE_MAP"),
    ):
        with pytest.raises(ValueError, match=reason):
            _config(**bad)
    assert _config(oidc_issuer="http://127.0.0.1:8080").issuer == "http://127.0.0.1:8080"
    assert parse_role_map("a=admin, b = planner") == (("a", "admin"), ("b", "planner"))


def test_roles_and_names_from_claims():
    config = _config()
    claims = {"sub": "1", "realm_access": {"roles": ["operator", "emergency", "x"]}}
    assert claim_values(claims, "realm_access.roles") == ["operator", "emergency", "x"]
    assert map_role(claims, config) == "emergency"  # the most capable one
    assert map_role({"sub": "1"}, config) is None
    assert map_role({"sub": "1"}, _config(oidc_default_role="operator")) == "operator"
    mapped = _config(oidc_role_claim="dept", oidc_role_map="应急办=emergency")
    assert map_role({"dept": "应急办"}, mapped) == "emergency"
    assert map_role({"dept": "emergency"}, mapped) is None  # only mapped values count
    assert sso_username({"preferred_username": "Li Na@城管", "sub": "9"}, config) == "sso.li-na"
    assert sso_username({"preferred_username": "张伟", "sub": "E1024"}, config) == "sso.e1024"
    assert sso_username({"sub": "ABC"}, config) == "sso.abc"
    assert len(sso_username({"sub": "$$$"}, config)) == len("sso.") + 16  # hashed subject
    with pytest.raises(OidcError):
        sso_username({"preferred_username": "x"}, config)


def test_discovery_document_is_checked():
    doc = {
        "issuer": "https://idp.example",
        "authorization_endpoint": "https://idp.example/auth",
        "token_endpoint": "https://idp.example/token",
        "jwks_uri": "https://idp.example/jwks",
    }
    provider = parse_discovery(doc, "https://idp.example", has_secret=True)
    assert provider.algorithms == ("RS256",) and provider.token_auth == "client_secret_basic"
    for bad in (
        {"issuer": "https://evil.example"},
        {"token_endpoint": "http://idp.example/token"},
        {"id_token_signing_alg_values_supported": ["HS256", "none"]},
        {"code_challenge_methods_supported": ["plain"]},
    ):
        with pytest.raises(OidcError):
            parse_discovery({**doc, **bad}, "https://idp.example", has_secret=True)


def test_a_token_from_another_key_set_is_refused(provider):
    from tests.dashboards.oidc_provider import Grant

    token = provider.id_token(Grant("c", "r", "n0", "", {"sub": "1"}, None))
    check = {"issuer": provider.issuer, "client_id": "c", "nonce": "n0"}
    assert verify_id_token(token, provider.jwks(), **check)["sub"] == "1"
    with pytest.raises(OidcError, match="unknown_key"):
        verify_id_token(token, {"keys": []}, **check)
    with pytest.raises(OidcError, match="wrong_nonce"):
        verify_id_token(token, provider.jwks(), **{**check, "nonce": "n1"})
