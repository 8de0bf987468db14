"""Helpers for the dashboard tests: waiting while React re-renders, pages, callbacks, logins."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import waiting

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout_s: float = 15, what: str = "") -> T:
    """``tests.waiting.wait_for`` where any exception counts as "not yet": an element goes
    stale, or is not there yet, while React re-renders the page."""
    return waiting.wait_for(condition, timeout_s, interval_s=0.1, what=what, tolerate=(Exception,))


def open_page(driver: WebDriver, url: str) -> None:
    """Load ``url`` with no remembered language (the app keeps the choice in localStorage).

    Console messages from the page before (e.g. a server a test has stopped) are discarded."""
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get(url)
    driver.execute_script("window.localStorage.clear();")
    driver.get(url)


def texts(driver: WebDriver, css: str) -> list[str]:
    """The text of every match, visible or scrolled out of its panel (textContent)."""
    return [
        (e.get_attribute("textContent") or "").strip()
        for e in driver.find_elements(By.CSS_SELECTOR, css)
    ]


def page_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def new_client():
    """An HTTP client with a cookie jar (anonymous until ``http_login``)."""
    import http.cookiejar
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.jar = jar  # type: ignore[attr-defined]
    return opener


def bind_client(source_ip: str):
    """An HTTP client (with a cookie jar) whose connections come from ``source_ip``, one of
    this machine's loopback addresses (127.0.0.x): another client address for the server."""
    import functools
    import http.client
    import http.cookiejar
    import urllib.request

    class FromAddress(urllib.request.HTTPHandler):
        def http_open(self, req):
            conn = functools.partial(http.client.HTTPConnection, source_address=(source_ip, 0))
            return self.do_open(conn, req)

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), FromAddress())
    opener.jar = jar  # type: ignore[attr-defined]
    return opener


def _jar_of(opener):
    for handler in getattr(opener, "handlers", []):
        if hasattr(handler, "cookiejar"):
            return handler.cookiejar
    return None


def csrf_of(opener, base: str) -> str:
    """The anti-forgery token the server left in ``opener``'s jar (fetched if none yet), as
    the dashboard's pages send it back in the X-CSRF-Token header."""
    jar = _jar_of(opener)
    assert jar is not None, "a client without a cookie jar cannot send the token"
    found = [c.value for c in jar if c.name == "cityops_csrf"]
    if not found:
        opener.open(base + "/_dash-layout", timeout=10).read()
        found = [c.value for c in jar if c.name == "cityops_csrf"]
    assert found, "the server set no cityops_csrf cookie"
    return found[-1]


def callback_body(opener, base: str, input_id: str, values: dict, changed: str) -> dict:
    """The JSON a browser posts for the callback that has ``input_id`` among its inputs."""
    import json

    with opener.open(base + "/_dash-dependencies", timeout=10) as resp:
        deps = json.loads(resp.read())
    dep = next(d for d in deps if any(i["id"] == input_id for i in d["inputs"]))
    return dependency_body(dep, values, changed)


def dependency_body(dep: dict, values: dict, changed: str | None) -> dict:
    """A callback call for ``dep`` (one entry of /_dash-dependencies); ``values`` maps "id.prop"
    to values, ``changed`` is the "id.prop" that triggered it."""
    out = dep["output"]
    parts = out.strip(".").split("...") if out.startswith("..") else [out]
    outputs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in parts]
    outputs = [{**o, "property": o["property"].split("@")[0]} for o in outputs]

    def items(specs: list[dict]) -> list[dict]:
        return [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in specs]

    return {
        "output": out,
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": items(dep["inputs"]),
        "state": items(dep.get("state", [])),
        "changedPropIds": [changed] if changed else [],
    }


def post_json(opener, base: str, path: str, body: dict, *, origin: str | None = "", token=True):
    """POST ``body`` as our pages do: Origin (``base`` unless given; None sends none) and the
    X-CSRF-Token header (unless ``token`` is False, or a string to send instead)."""
    import json
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin or base
    if token is True:
        headers["X-CSRF-Token"] = csrf_of(opener, base)
    elif token:
        headers["X-CSRF-Token"] = token
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers)
    return opener.open(req, timeout=60)


def status_of(call) -> int:
    """The HTTP status of ``call()`` (an urllib open), refusals included."""
    import urllib.error

    try:
        with call() as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def call_callback(opener, base: str, input_id: str, values: dict, changed: str) -> dict:
    """POST to /_dash-update-component as the browser would (Origin and anti-forgery token
    included), for the callback that has ``input_id`` among its inputs; ``values`` maps "id.prop"
    to values, ``changed`` is the "id.prop" that triggered it. Returns the decoded response."""
    import json

    if _jar_of(opener) is None:
        opener = new_client()
    body = callback_body(opener, base, input_id, values, changed)
    with post_json(opener, base, "/_dash-update-component", body) as resp:
        return json.loads(resp.read())


def callback_status(opener, base: str, input_id: str, values: dict, changed: str) -> int:
    """The HTTP status of that call (401 and 403 are refusals by the server)."""
    if _jar_of(opener) is None:
        opener = new_client()
    body = callback_body(opener, base, input_id, values, changed)
    return status_of(lambda: post_json(opener, base, "/_dash-update-component", body))


def insert_alert(
    db_url: str,
    sensor_id: str,
    quantity: str,
    kind: str,
    severity: str,
    value: float,
    limit: float,
    message_zh: str,
    message_en: str,
) -> int:
    """A new open alert on ``sensor_id`` raised now (committed, of the sensor's utility), as
    the alert engine writes one: its id."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) SELECT sensor_id, utility, %s, %s, %s, now(),"
            " %s, %s, %s, %s FROM sensors WHERE sensor_id = %s RETURNING alert_id",
            (quantity, kind, severity, value, limit, message_zh, message_en, sensor_id),
        ).fetchone()[0]


def refresh_over_http(base: str, page: str, **values: object) -> dict:
    """What a page's periodic refresh answers an anonymous browser (``page``-tick fired once),
    in English; ``values`` are the page's other inputs ("id.prop": value)."""
    tick = f"{page}-tick.n_intervals"
    inputs = {tick: 1, "lang.data": "en", **values}
    return call_callback(new_client(), base, f"{page}-tick", inputs, tick)["response"]


def http_login(base: str, username: str, password: str):
    """An HTTP client with the session cookie of ``username`` (through the /login form)."""
    opener = new_client()
    status = post_form(opener, base, "/login", {"username": username, "password": password})
    assert any(c.name == "cityops_session" for c in opener.jar), f"no session cookie ({status})"
    return opener


def post_form(opener, base: str, path: str, form: dict, *, origin: str | None = "", token=True):
    """POST an HTML form as a browser on our page would (Origin, and the form's ``csrf`` field
    from a fresh login page unless ``token`` is False or a string); the HTTP status."""
    import urllib.parse
    import urllib.request

    form = dict(form)
    if token is True:
        form["csrf"] = login_token(opener, base)
    elif token:
        form["csrf"] = token
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin is not None:
        headers["Origin"] = origin or base
    data = urllib.parse.urlencode(form).encode()
    return status_of(lambda: opener.open(urllib.request.Request(base + path, data, headers)))


def login_token(opener, base: str) -> str:
    """The anti-forgery token of a fresh login form (its cookie goes into ``opener``'s jar)."""
    import re

    with opener.open(base + "/login", timeout=10) as resp:
        page = resp.read().decode()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no token in the login form"
    return match.group(1)


def http_logout(opener, base: str) -> int:
    """Log out as the header's button does (a POST with the token)."""
    return post_form(opener, base, "/logout", {}, token=csrf_of(opener, base))


def browser_logout(driver: WebDriver, base: str) -> None:
    """Log out through the /logout page's button (logging out is a POST with the token)."""
    driver.get(base + "/logout")
    driver.find_element(By.ID, "logout-submit").click()
    wait_for(lambda: not driver.current_url.startswith(base + "/logout"), what="logged out")


def browser_login(driver: WebDriver, base: str, username: str, password: str) -> None:
    """Sign ``driver`` in through the /login form and wait until the header shows the user."""
    open_page(driver, base + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(lambda: username in page_text(driver), what=f"{username} signed in")
