"""The alert console on a phone (390x844) sends a crew (issue 16): large targets measured, a tap
on an alert's row opens its facts, the map shows the district, the pipes around and the valves
to close from the incident's isolation data, the counts are the database's, the user reaches
"acknowledged" with the confirmation on screen; an ended session leads to the login page and
back to the same alert, and the login page returns to local paths only."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.types.json import Jsonb
from selenium.webdriver.common.by import By

from dashboards.login import local_path
from tests.dashboards.browser import set_viewport, severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    login_token,
    new_client,
    open_page,
    page_text,
    wait_for,
)
from tests.dashboards.test_console import pipe_with_customers

pytestmark = pytest.mark.browser

PHONE = (390, 844)
TARGET_PX = 44  # WCAG 2.5.5: a target at least 44x44 CSS px
INPUT_FONT_PX = 16  # below this a phone zooms into the field
CREW = ("zhao.lei", "Crew-on-call-2026")  # an emergency user of this module only


@dataclass(frozen=True)
class Burst:
    alert_id: int  # the open alert, on a sensor that is on no pipe
    pipe: str  # where the engine placed the incident
    valves: list[str]  # incidents.affected: the valves to close
    customers: int
    extent_m: float  # between the incident's two sensors
    district_zh: str
    district_en: str


@pytest.fixture(scope="module")
def burst(dash_db, demo_networks) -> Burst:
    """A burst incident as the engine records one: two alerts on two sensors about 300 m apart
    (one resolved), placed on a pipe whose isolation closes valves and cuts customers off, the
    isolation figures stored in ``incidents.affected``; the sensors sit on no pipe themselves
    (the console used to look only at the sensor's own pipe, and showed no valves)."""
    with psycopg.connect(dash_db) as conn:
        pipe, iso = pipe_with_customers(conn, from_last=True)
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom)"
            " SELECT sid, 'water', 'water_pressure', name,"
            " (SELECT adcode FROM districts d WHERE ST_Contains(d.geom, c.p)), pt FROM"
            " (SELECT ST_LineInterpolatePoint(geom, 0.5) AS p FROM water_pipes"
            "  WHERE pipe_id = %s) c,"
            " LATERAL (VALUES ('wp-phone-1', '抢修测试压力一', c.p),"
            "  ('wp-phone-2', '抢修测试压力二',"
            "   ST_Project(c.p::geography, 300, radians(60))::geometry)) v(sid, name, pt)",
            (pipe,),
        )
        district_zh, district_en, extent = conn.execute(
            "SELECT d.name_zh, d.name_en, ST_Distance(a.geom::geography, b.geom::geography)"
            " FROM sensors a, sensors b, districts d WHERE a.sensor_id = 'wp-phone-1'"
            " AND b.sensor_id = 'wp-phone-2' AND d.adcode = a.district_adcode"
        ).fetchone()
        incident = conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " district_adcode, alert_count, likely_location, affected, enriched_at,"
            " explanation_zh, explanation_en) SELECT 'water', 'water_burst', 'critical', now(),"
            " now(), geom, district_adcode, 1, %s, %s, now(),"
            " '疑似供水爆管：1 条相关告警，范围约 0 米',"
            " 'suspected water main burst: 1 related alerts within about 0 m'"
            " FROM sensors WHERE sensor_id = 'wp-phone-1' RETURNING incident_id",
            (
                pipe,
                Jsonb(
                    {
                        k: iso[k]
                        for k in (
                            "valves_to_close",
                            "customers_without_supply",
                            "population_without_supply",
                        )
                    }
                ),
            ),
        ).fetchone()[0]
        ids = [
            conn.execute(
                "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state,"
                " raised_at, value, limit_value, message_zh, message_en, incident_id) VALUES"
                " (%s, 'water', 'pressure', 'water_burst', %s, %s, now(), 95, 200, %s, %s, %s)"
                " RETURNING alert_id",
                (sid, severity, state, zh, en, incident),
            ).fetchone()[0]
            for sid, severity, state, zh, en in (
                ("wp-phone-2", "major", "resolved", "压力骤降（已恢复）", "Pressure drop (back)"),
                (
                    "wp-phone-1",
                    "critical",
                    "open",
                    "疑似爆管：压力骤降至 95 kPa",
                    "Suspected burst: pressure down to 95 kPa",
                ),
            )
        ]
    return Burst(
        ids[1],
        pipe,
        list(iso["valves_to_close"]),
        iso["customers_without_supply"],
        extent,
        district_zh,
        district_en,
    )


@pytest.fixture(scope="module")
def crew(dash_db) -> tuple[str, str]:
    from access import accounts

    with psycopg.connect(dash_db) as conn:
        accounts.write_user(conn, CREW[0], CREW[1], "emergency", "赵磊")
    return CREW


@pytest.fixture
def phone(browser):
    set_viewport(browser, *PHONE)
    yield browser
    set_viewport(browser, 1920, 1080)


SMALL_TARGETS_JS = """
const small = [];
const check = (el, what) => {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && (r.width < arguments[0] - 0.5 || r.height < arguments[0] - 0.5))
    small.push([what, el.textContent.trim().slice(0, 20), Math.round(r.width), Math.round(r.height)]);
};
document.querySelectorAll('#alerts-table tr.pickable').forEach((e) => check(e, 'row'));
document.querySelectorAll('button.action, button.pick').forEach((e) => check(e, 'button'));
document.querySelectorAll('.nav-link').forEach((e) => check(e, 'nav'));
document.querySelectorAll('.severity-filter label').forEach((e) => check(e, 'filter'));
document.querySelectorAll('#alerts-comment, #alerts-assignee').forEach((e) => check(e, 'input'));
const fonts = [...document.querySelectorAll('#alerts-comment, #alerts-assignee, .severity-filter label')]
  .map((e) => parseFloat(getComputedStyle(e).fontSize));
const header = document.getElementById('header-row').getBoundingClientRect().height;
return {small: small, fonts: fonts, header: header};
"""


def in_view(browser, element_id: str) -> bool:
    """The element's box lies wholly inside the viewport."""
    return browser.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        " return r.height > 0 && r.top >= -1 && r.bottom <= window.innerHeight + 1;",
        element_id,
    )


MAP_JS = """
const gd = document.querySelector('#alerts-map .js-plotly-plot');
const x = gd._fullLayout.xaxis.range, y = gd._fullLayout.yaxis.range;
const inside = (t) => t.x.some((v, i) => v !== null && v >= x[0] && v <= x[1]
  && t.y[i] >= y[0] && t.y[i] <= y[1]);
return gd.data.map((t) => [t.name, inside(t), t.x.filter((v) => v !== null).length]);
"""


def test_a_crew_is_sent_from_a_phone(dash_server, dash_db, burst, crew, phone, screenshots):
    browser = phone
    browser_login(browser, dash_server.url, *crew)
    try:
        open_page(browser, dash_server.url + "/alerts")
        row = wait_for(
            lambda: browser.find_element(
                By.CSS_SELECTOR, f"#alerts-table tr[data-alert-id='{burst.alert_id}']"
            ),
            what="the burst's alert in the list",
        )
        # targets and fields measured: nothing under 44x44 px, fields in 16 px, a short header
        m = browser.execute_script(SMALL_TARGETS_JS, TARGET_PX)
        assert m["small"] == [], m["small"]
        assert m["fonts"] and min(m["fonts"]) >= INPUT_FONT_PX, m["fonts"]
        assert m["header"] <= 2 * TARGET_PX + 12, m["header"]  # two short lines (was four)
        # a tap on the row's message (not its number) opens the alert, scrolled into view
        message = row.find_element(By.CSS_SELECTOR, "td.message")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", message)
        message.click()
        facts = wait_for(
            lambda: browser.find_element(By.ID, "alerts-facts").text, what="the incident's facts"
        )
        assert "疑似供水爆管" in facts
        # the database's counts now, not the engine's at the time it wrote its explanation
        expected = f"2 条相关告警（1 条未关闭），来自 2 个传感器，相距约 {burst.extent_m:,.0f} 米"
        assert expected in facts, facts
        assert "范围约 0 米" not in page_text(browser)
        wait_for(lambda: in_view(browser, "alerts-selected-label"), what="facts scrolled to")
        # the map draws the district, the pipes around and the valves to close, in its view
        traces = wait_for(lambda: browser.execute_script(MAP_JS), what="incident map")
        shown = {name: inside for name, inside, _n in traces}
        assert shown.get(f"所在区县：{burst.district_zh}") is True, traces
        assert shown.get("周边管网") is True, traces
        assert shown.get("需关闭阀门") is True, traces
        assert shown.get("告警传感器") is True, traces
        valves_drawn = next(n for name, _in, n in traces if name == "需关闭阀门")
        assert valves_drawn == len(burst.valves), traces
        impact = browser.find_element(By.ID, "alerts-impact").text
        assert all(v in impact for v in burst.valves), impact
        assert f"停供用户 {burst.customers} 户" in impact
        browser.execute_script("document.getElementById('alerts-facts').scrollIntoView()")
        browser.save_screenshot(str(screenshots / "alerts-phone-incident.png"))
        # the facts come before the actions
        order = browser.execute_script(
            "return ['alerts-detail', 'alerts-ack', 'alerts-result'].map("
            "(id) => document.getElementById(id).getBoundingClientRect().top)"
        )
        assert order == sorted(order), order
        # acknowledge: the confirmation is on screen, the alert acknowledged in the database
        browser.find_element(By.ID, "alerts-comment").send_keys("抢修队已出发")
        ack = browser.find_element(By.ID, "alerts-ack")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", ack)
        ack.click()
        wait_for(
            lambda: "已执行：确认" in browser.find_element(By.ID, "alerts-result").text,
            what="confirmation",
        )
        wait_for(lambda: in_view(browser, "alerts-result"), what="confirmation in view")
        with psycopg.connect(dash_db) as conn:
            state = conn.execute(
                "SELECT state FROM alerts WHERE alert_id = %s", (burst.alert_id,)
            ).fetchone()[0]
        assert state == "acknowledged"
        browser.save_screenshot(str(screenshots / "alerts-phone-acknowledged.png"))
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)


def end_sessions(db_url: str, username: str) -> None:
    """``username``'s sessions end, as at their idle or absolute expiry."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'"
            " WHERE username = %s",
            (username,),
        )


def test_an_ended_session_leads_to_the_login_and_back_to_the_alert(
    dash_server, dash_db, burst, crew, phone
):
    browser = phone
    browser_login(browser, dash_server.url, *crew)
    # the link a colleague sends: the alert opens from the URL
    open_page(browser, f"{dash_server.url}/alerts?alert={burst.alert_id}")
    wait_for(
        lambda: "疑似供水爆管" in browser.find_element(By.ID, "alerts-facts").text, what="facts"
    )
    assert f"已选告警：{burst.alert_id}" in page_text(browser)
    end_sessions(dash_db, crew[0])
    link = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, "#alerts-expired #alerts-relogin"),
        what="the session-ended notice",
    )
    assert "登录已过期" in browser.find_element(By.ID, "alerts-expired").text
    # no longer shown as signed in, and no action offered until the login
    assert not any(e.is_displayed() for e in browser.find_elements(By.ID, "logout-button"))
    assert (
        browser.execute_script(
            "return getComputedStyle(document.getElementById('alerts-ack')).pointerEvents"
        )
        == "none"
    )
    link.click()  # the notice is not redrawn once shown: the same element takes the tap
    wait_for(lambda: browser.find_element(By.ID, "username"), what="login page")
    browser.find_element(By.ID, "username").send_keys(crew[0])
    browser.find_element(By.ID, "password").send_keys(crew[1])
    browser.find_element(By.ID, "login-submit").click()
    wait_for(
        lambda: browser.current_url.endswith(f"/alerts?alert={burst.alert_id}"),
        what="back at the alert",
    )
    wait_for(
        lambda: "疑似供水爆管" in browser.find_element(By.ID, "alerts-facts").text, what="facts"
    )
    assert f"已选告警：{burst.alert_id}" in page_text(browser)
    assert not browser.find_element(By.ID, "alerts-expired").text
    assert severe_console_messages(browser) == []
    browser_logout(browser, dash_server.url)


def test_the_login_returns_to_local_paths_only(dash_server, users):
    for bad in (
        "https://evil.example/",
        "//evil.example/alerts",
        "/\\evil.example",
        "/alerts\\..",
        "javascript:alert(1)",
        "alerts",
        "/alerts\r\nSet-Cookie: x=1",
        "/" + "a" * 600,
        None,
        ["/alerts"],
    ):
        assert local_path(bad) is None, bad
    assert local_path("/alerts?alert=7") == "/alerts?alert=7"
    assert local_path("/sensor?id=wp-510104-1&lang=en") == "/sensor?id=wp-510104-1&lang=en"
    # over HTTP: a foreign return path is not put in the form, and not followed after login
    client = new_client()
    with client.open(dash_server.url + "/login?next=//evil.example/x", timeout=10) as resp:
        assert "evil.example" not in resp.read().decode()
    for target, landing in (("//evil.example/x", "/alerts"), ("/trust?lang=en", "/trust?lang=en")):
        client = new_client()
        form = {
            "username": "wang.fang",
            "password": users["wang.fang"],
            "csrf": login_token(client, dash_server.url),
            "next": target,
        }
        request = urllib.request.Request(
            dash_server.url + "/login",
            urllib.parse.urlencode(form).encode(),
            {"Origin": dash_server.url},
        )
        with client.open(request, timeout=10) as resp:
            assert resp.geturl() == dash_server.url + landing, (target, resp.geturl())
    page = urllib.request.urlopen(dash_server.url + "/login?next=/alerts%3Falert%3D7", timeout=10)
    html = page.read().decode()
    assert re.search(r'name="next" value="/alerts\?alert=7"', html), html


CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")
DETAIL_TEXT_JS = (
    "const d = document.getElementById('alerts-detail');"
    " return d.innerText + ' ' + [...d.querySelectorAll('svg text')]"
    ".map((t) => t.textContent).join(' ')"
)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_incident_detail_speaks_one_language(dash_server, dash_db, burst, crew, browser, lang):
    """The facts, the map's legend and the impact in the page's language only; the data's own
    names (sensors, facilities without an English name) and ids are shown as they are."""
    browser_login(browser, dash_server.url, *crew)
    try:
        open_page(browser, f"{dash_server.url}/alerts?alert={burst.alert_id}&lang={lang}")
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#alerts-map .legendtext"), what="map"
        )
        text = browser.execute_script(DETAIL_TEXT_JS)
    finally:
        browser_logout(browser, dash_server.url)
    expected = {
        "en": ["Suspected water main burst", "Related alerts: 2, open: 1; from 2 sensors",
               f"District: {burst.district_en}", "Valves to close", "Network nearby"],
        "zh": ["疑似供水爆管", f"所在区县：{burst.district_zh}", "需关闭阀门", "周边管网"],
    }  # fmt: skip
    assert all(e in text for e in expected[lang]), text
    with psycopg.connect(dash_db) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sensors UNION SELECT name_zh FROM facilities WHERE name_en IS NULL"
        ) if r[0]]  # fmt: skip
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, " ")
    if lang == "en":
        assert CJK.findall(text) == [], text
    else:  # ids (letters with digits) and units are not English words
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", text) if not re.search(r"\d", w)]
        assert words == [], words


def test_a_source_loss_incident_has_no_map_isolation_or_customers(
    dash_server, dash_db, crew, browser
):
    """An incident about the data, not the network (kind ``source_loss``: no placement, nothing
    stored in ``affected``): the console names it and counts its alerts, and draws no map,
    isolation or customers (before, it fell back to the sensor's own pipe and map)."""
    with psycopg.connect(dash_db) as conn:
        incident = conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " explanation_zh, explanation_en) SELECT 'water', 'source_loss', 'major', now(),"
            " now(), geom, '数据源中断', 'Data source lost' FROM sensors"
            " WHERE sensor_id = 'wp-510104-1' RETURNING incident_id"
        ).fetchone()[0]
        alert_id = conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en, incident_id) VALUES ('wp-510104-1', 'water',"
            " 'pressure', 'silent', 'major', now(), 0, 0, '传感器无数据', 'Sensor silent', %s)"
            " RETURNING alert_id",
            (incident,),
        ).fetchone()[0]
    try:
        browser_login(browser, dash_server.url, *crew)
        open_page(browser, f"{dash_server.url}/alerts?alert={alert_id}")
        facts = wait_for(
            lambda: (x := browser.find_element(By.ID, "alerts-facts").text) and x, what="facts"
        )
        assert facts.startswith("数据源中断") and "1 条相关告警（1 条未关闭）" in facts
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#alerts-timeline h3"), what="tl")
        for absent in ("alerts-map", "alerts-impact"):
            assert not browser.find_elements(By.ID, absent), absent
        assert "Traceback" not in page_text(browser)
        assert severe_console_messages(browser) == []
    finally:
        with psycopg.connect(dash_db) as conn:
            conn.execute("DELETE FROM alerts WHERE alert_id = %s", (alert_id,))
            conn.execute("DELETE FROM incidents WHERE incident_id = %s", (incident,))
        browser_logout(browser, dash_server.url)


def test_the_header_follows_the_session_on_every_page(dash_server, dash_db, crew, browser):
    """On a page other than the console, an ended session no longer shows its user in the
    header: the logout button becomes a login link that comes back to the same page (its
    query included), and after the login the header shows the user again."""
    page = "/sensor?id=wp-510104-1"
    open_page(browser, dash_server.url + "/trust")  # anonymous: the link comes back here
    link = wait_for(lambda: browser.find_element(By.ID, "login-link"), what="login link")
    assert _next_of(link.get_attribute("href")) == "/trust"
    browser_login(browser, dash_server.url, *crew)
    open_page(browser, dash_server.url + page)
    wait_for(lambda: browser.find_element(By.ID, "logout-button").is_displayed(), what="user")
    assert crew[0] in browser.find_element(By.ID, "header").text
    end_sessions(dash_db, crew[0])
    link = wait_for(
        lambda: browser.find_element(By.ID, "login-link"),
        timeout_s=20,  # one refresh period of the header's own check
        what="the header's login link after the session ended",
    )
    assert crew[0] not in browser.find_element(By.ID, "header").text
    assert not browser.find_elements(By.ID, "logout-button")
    assert _next_of(link.get_attribute("href")) == page
    link.click()
    wait_for(lambda: browser.find_element(By.ID, "username"), what="login page")
    browser.find_element(By.ID, "username").send_keys(crew[0])
    browser.find_element(By.ID, "password").send_keys(crew[1])
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: browser.current_url == dash_server.url + page, what="back at the page")
    wait_for(lambda: crew[0] in browser.find_element(By.ID, "header").text, what="user again")
    assert severe_console_messages(browser) == []
    browser_logout(browser, dash_server.url)


def _next_of(href: str) -> str:
    """Where the login page is asked to come back to."""
    query = urllib.parse.urlsplit(href).query
    return urllib.parse.parse_qs(query)["next"][0]
