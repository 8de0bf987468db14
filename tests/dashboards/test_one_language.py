"""Issue 16 item 5: one language at a time. Every page (overview, wall, map, sensor, alerts with
an alert's timeline, trust, planner, admin) opened in English shows no Chinese except proper
names the data holds, and in Chinese no English sentence (ids, codes and units allowed).

How proper names are told apart: they are read from the database, not listed here. A name the
data has in both languages (districts, facilities with ``name_en``) must be shown in English on
an English page, so only the Chinese names that have no English form are allowed there: sensor
names, metered areas' names, people's display names and facilities without ``name_en``.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from selenium.webdriver.common.by import By

from dashboards.model import display_text
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    insert_alert,
    open_page,
    page_text,
    wait_for,
)

pytestmark = pytest.mark.browser

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")
# three or more words of letters in a row: a sentence or a phrase, not an id, code or unit
ENGLISH = re.compile(r"(?<![\w/.-])[A-Za-z][a-z]+(?:[ ,']+[A-Za-z][a-z]+){2,}(?![\w/-])")
PAGES = (
    "/",
    "/wall",
    "/map",
    "/sensor?id=wp-510104-1",
    "/alerts",
    "/trust",
    "/planner",
    "/dictionary",
    "/admin",
)
# everything a user reads: the text, the fields' placeholders, the charts' SVG text (legends,
# axes), but not the language switch, which names the other language in that language, nor
# code (commands and field names, the same in every language)
TEXT_JS = """
const body = document.body.cloneNode(true);
for (const el of body.querySelectorAll('code')) el.remove();
if (arguments[0]) for (const el of body.querySelectorAll(arguments[0])) el.remove();
document.documentElement.appendChild(body);  // innerText needs a rendered element
const parts = [body.innerText];
body.remove();
for (const el of document.querySelectorAll('[placeholder]')) parts.push(el.placeholder);
for (const el of document.querySelectorAll('svg text')) parts.push(el.textContent);
const sw = document.getElementById('lang-switch');
return parts.join('\\n').split(sw ? sw.innerText : '\\u0000').join(' ');
"""
READY = {  # what each page shows once its data has arrived (en, zh)
    "/": ("Districts", "各区（市）县状态"),
    "/wall": ("Latest events", "最新事件"),
    "/map": ("sensors shown", "个传感器"),
    "/sensor?id=wp-510104-1": ("Pressure", "压力"),
    "/alerts": ("Timeline", "处置记录"),
    "/trust": ("Recently quarantined", "最近隔离的消息"),
    "/planner": ("Fields of this layer", "该图层的字段"),
    "/dictionary": ("Measured quantities", "传感器类型"),
    "/admin": ("New user", "新建用户"),
}


@pytest.fixture(scope="module")
def proper_names(dash_db, demo_networks, users) -> tuple[set[str], set[str]]:
    """(Chinese names the data has no English form of, English names from the data)."""
    with psycopg.connect(dash_db) as conn:
        zh = {r[0] for r in conn.execute("SELECT name FROM sensors")}
        zh |= {r[0] for r in conn.execute("SELECT name FROM metered_areas")}
        zh |= {r[0] for r in conn.execute("SELECT display_name FROM dashboard_users")}
        zh |= {
            r[0]
            for r in conn.execute("SELECT name_zh FROM facilities WHERE coalesce(name_en, '') = ''")
        }
        zh |= {
            r[0]
            for r in conn.execute("SELECT name_zh FROM districts WHERE coalesce(name_en, '') = ''")
        }
        en = {r[0] for r in conn.execute("SELECT name FROM sensors")}
        en |= {r[0] for r in conn.execute("SELECT reason || ' ' || detail FROM quarantine")}
    # as the pages show them (display_text: $ becomes ＄, invisible characters go)
    zh |= {display_text(n) for n in zh if n}
    en |= {display_text(n) for n in en if n}
    return {n for n in zh if n}, {n for n in en if n}


@pytest.fixture(scope="module")
def engine_alert(dash_db) -> int:
    """An alert the engine raised: its timeline starts with the engine's 'raise' row, whose
    comment is the Chinese message (the English one in the row's detail)."""
    from alerts.stores.audit import AuditEntry, append_audit, lock_audit

    alert_id = insert_alert(
        dash_db,
        "wp-510104-1",
        "pressure",
        "threshold_low",
        "major",
        150.0,
        200.0,
        "wp-510104-1 压力 150 kPa，低于下限 200 kPa",
        "wp-510104-1: pressure 150 kPa is below the low limit 200 kPa",
    )
    with psycopg.connect(dash_db) as conn, conn.transaction():
        lock_audit(conn)
        at = conn.execute("SELECT raised_at FROM alerts WHERE alert_id = %s", (alert_id,))
        detail = {"message_en": "wp-510104-1: pressure 150 kPa is below the low limit 200 kPa"}
        entry = AuditEntry(
            0,
            alert_id,
            at.fetchone()[0],
            "system",
            "raise",
            "",
            "open",
            "wp-510104-1 压力 150 kPa，低于下限 200 kPa",
            detail,
        )
        append_audit(conn, [entry])
    return alert_id


def without(text: str, names: set[str]) -> str:
    """The text with every proper name from the data taken out (longest first)."""
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, " ")
    return text


def shown_text(browser, base: str, path: str, lang: str, alert_id: int, leave_out: str = "") -> str:
    """What ``path`` shows in ``lang`` (without the elements ``leave_out`` selects)."""
    sep = "&" if "?" in path else "?"
    open_page(browser, f"{base}{path}{sep}lang={lang}")
    if path == "/alerts":  # the selected alert's detail: timeline, impact
        row = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, f"tr[data-alert-id='{alert_id}']"),
            what="the engine's alert",
        )
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        row.click()
    ready = READY[path][0 if lang == "en" else 1]
    wait_for(lambda: ready in page_text(browser), what=f"{ready!r} on {path}")
    return browser.execute_script(TEXT_JS, leave_out)


def context(text: str, match: re.Match) -> str:
    return text[max(0, match.start() - 30) : match.end() + 30].replace("\n", " / ")


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("path", PAGES)
def test_each_page_speaks_one_language(
    dash_server, users, proper_names, engine_alert, browser, path, lang
):
    """English: no Chinese but names the data has no English form of. Chinese: no English
    phrase but names from the data (a sensor's, a quarantined message's parser detail)."""
    zh_names, en_names = proper_names
    browser_login(browser, dash_server.url, "zhou.min", users["zhou.min"])
    try:
        text = shown_text(browser, dash_server.url, path, lang, engine_alert)
        rest = without(text, zh_names if lang == "en" else en_names)
        foreign = CJK if lang == "en" else ENGLISH
        found = [context(rest, m) for m in foreign.finditer(rest)]
        assert found == [], f"other language on {path} ({lang}): {found}"
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)


def test_the_english_timeline_is_english(dash_server, users, proper_names, engine_alert, browser):
    """The engine's timeline row reads "Raised → Open" in English, and its comment too: the
    engine writes alert_audit.comment in Chinese and keeps the English in the row's detail
    (->> 'message_en'), which an English page shows."""
    browser_login(browser, dash_server.url, "zhou.min", users["zhou.min"])
    try:
        shown_text(browser, dash_server.url, "/alerts", "en", engine_alert)
        rows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.timeline li")]
        raised = [r for r in rows if "Raised → Open" in r]
        assert raised, rows
        found = [r for r in raised if CJK.search(without(r, proper_names[0]))]
        assert found == [], found
    finally:
        browser_logout(browser, dash_server.url)


def test_the_english_trust_page_names_districts_in_english(dash_server, browser):
    """The data has every district's English name (districts.name_en): the English trust page
    shows it (its rows are grouped by the Chinese name)."""
    open_page(browser, dash_server.url + "/trust?lang=en")
    cells = wait_for(
        lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#trust-district td")],
        what="the district table",
    )
    assert "Jinjiang District" in cells and not any(CJK.search(c) for c in cells), cells


def test_the_login_page_switches_language(dash_server, browser):
    open_page(browser, dash_server.url + "/login")
    switch = wait_for(lambda: browser.find_element(By.ID, "lang-switch"), what="the switch")
    assert switch.text == "English"
    switch.click()
    wait_for(lambda: "User name" in page_text(browser), what="the English login")
    text = browser.execute_script(TEXT_JS)
    assert not CJK.search(text), text
    browser.find_element(By.ID, "lang-switch").click()
    wait_for(lambda: "用户名" in page_text(browser), what="the Chinese login")


@pytest.mark.parametrize(("lang", "zoom"), [("zh", "缩放"), ("en", "Zoom")])
def test_the_map_tools_speak_the_page_language(dash_server, users, browser, lang, zoom):
    """The map page's Plotly mode bar (zoom, pan, reset): its tooltips in the page's language,
    from the locale the dashboard serves itself (no internet on a government network); and no
    button that would upload the map to Plotly Cloud."""
    browser_login(browser, dash_server.url, "zhou.min", users["zhou.min"])
    try:
        open_page(browser, f"{dash_server.url}/map?lang={lang}")
        titles = wait_for(
            lambda: [
                e.get_attribute("data-title")
                for e in browser.find_elements(By.CSS_SELECTOR, "#map-graph .modebar-btn")
            ],
            what="the map's mode bar",
        )
        assert zoom in titles, titles
        assert not [x for x in titles if x and ("Share" in x or "Chart Studio" in x)]
        others = [x for x in titles if x and (CJK.search(x) is None) == (lang == "zh")]
        assert others == [], others
    finally:
        browser_logout(browser, dash_server.url)
