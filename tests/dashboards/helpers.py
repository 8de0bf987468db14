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


def call_callback(opener, base: str, input_id: str, values: dict, changed: str) -> dict:
    """POST to /_dash-update-component as the browser would, for the callback that has
    ``input_id`` among its inputs; ``values`` maps "id.prop" to values, ``changed`` is the
    "id.prop" that triggered it. Returns the decoded response."""
    import json
    import urllib.request

    with opener.open(base + "/_dash-dependencies", timeout=10) as resp:
        deps = json.loads(resp.read())
    dep = next(d for d in deps if any(i["id"] == input_id for i in d["inputs"]))
    out = dep["output"]
    parts = out.strip(".").split("...") if out.startswith("..") else [out]
    outputs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in parts]
    outputs = [{**o, "property": o["property"].split("@")[0]} for o in outputs]

    def items(specs: list[dict]) -> list[dict]:
        return [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in specs]

    body = {
        "output": out,
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": items(dep["inputs"]),
        "state": items(dep.get("state", [])),
        "changedPropIds": [changed],
    }
    req = urllib.request.Request(
        base + "/_dash-update-component",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(req, timeout=60) as resp:
        return json.loads(resp.read())


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
    import urllib.request

    tick = f"{page}-tick.n_intervals"
    inputs = {tick: 1, "lang.data": "en", **values}
    return call_callback(urllib.request.build_opener(), base, f"{page}-tick", inputs, tick)[
        "response"
    ]


def http_login(base: str, username: str, password: str):
    """An HTTP client with the session cookie of ``username`` (through the /login form)."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    data = urllib.parse.urlencode(
        {"username": username, "password": password, "csrf": login_token(opener, base)}
    ).encode()
    opener.open(base + "/login", data=data, timeout=10)
    assert any(c.name == "cityops_session" for c in jar), "no session cookie"
    return opener


def login_token(opener, base: str) -> str:
    """The anti-forgery token of a fresh login form (its cookie goes into ``opener``'s jar)."""
    import re

    with opener.open(base + "/login", timeout=10) as resp:
        page = resp.read().decode()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no token in the login form"
    return match.group(1)


def browser_login(driver: WebDriver, base: str, username: str, password: str) -> None:
    """Sign ``driver`` in through the /login form and wait until the header shows the user."""
    open_page(driver, base + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    wait_for(lambda: username in page_text(driver), what=f"{username} signed in")
