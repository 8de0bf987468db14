"""Issue 16 item 4 in a real browser: a pipe shows its attributes on hover, a click opens its
attributes, alerts and "isolate this pipe" (on the planner and the map page), the valve plan is
the GIS function's and is drawn; a planner may not read valve plans; the form is for planners
only, its buttons never cover a field at 1440x900; the district filter keeps only the pipes
whose midpoint lies in the district."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.dashboards.browser import set_viewport, severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    call_callback,
    http_login,
    open_page,
    page_text,
    wait_for,
)

pytestmark = pytest.mark.browser

JINJIANG = 510104
# where a pick handle of a trace is on the screen: [x, y, customdata] of its point k (or the
# point whose id is given), in CSS pixels of the viewport
HANDLE_JS = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd.data || !gd._fullLayout || !gd._fullLayout.xaxis) return null;
const tr = gd.data.find(t => t.meta && t.meta.pick === 'handles');
if (!tr || !tr.x.length) return null;
const box = gd.querySelector('.draglayer .nsewdrag').getBoundingClientRect();
const fl = gd._fullLayout;
const at = k => [box.left + fl.xaxis.l2p(tr.x[k]), box.top + fl.yaxis.l2p(tr.y[k])];
const inside = ([x, y]) => x > box.left + 5 && x < box.right - 5 && y > box.top + 5
  && y < box.bottom - 5;
const k = tr.customdata.findIndex(
  (c, i) => c && (arguments[1] ? c[1] === arguments[1] : inside(at(i))));
return k < 0 ? null : [...at(k), tr.customdata[k]];
"""
# the map page's figure, once Plotly has drawn it
MAP_READY_JS = (
    "const g = document.querySelector('#map-graph .js-plotly-plot');"
    "return typeof Plotly !== 'undefined' && !!g && !!g._fullLayout && !!g._fullLayout.xaxis;"
)
MAP_RANGE_JS = (
    "const r = document.querySelector('#map-graph .js-plotly-plot').layout.xaxis.range;"
    "return r[1] - r[0];"
)
ZOOM_JS = (
    "const g = document.querySelector('#map-graph .js-plotly-plot');"
    "Plotly.relayout(g, {'xaxis.range': [104.055, 104.069], 'yaxis.range': [30.655, 30.665]});"
)
# every visible pick handle: [x, y, customdata]
HANDLES_JS = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
const tr = gd.data.find(t => t.meta && t.meta.pick === 'handles');
const box = gd.querySelector('.draglayer .nsewdrag').getBoundingClientRect();
const fl = gd._fullLayout;
return tr.x.map((x, k) => [box.left + fl.xaxis.l2p(x), box.top + fl.yaxis.l2p(tr.y[k]),
  tr.customdata[k]]).filter(([x, y]) => x > box.left + 5 && x < box.right - 5
  && y > box.top + 5 && y < box.bottom - 5);
"""
TRACE_COUNT_JS = "return document.querySelector(arguments[0] + ' .js-plotly-plot').data.length;"
ISOLATION_JS = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd.data) return null;
const drawn = gd.data.filter(t => t.meta && t.meta.isolation)
  .map(t => [t.meta.isolation, t.x.filter(v => v !== null).length]).filter(([, n]) => n > 0);
return drawn.length ? drawn : null;
"""


def point_at(browser, x: float, y: float, *, click: bool) -> None:
    """Move the real mouse to (x, y) of the viewport, and click there when asked."""
    ActionChains(browser).reset_actions()
    builder = ActionBuilder(browser)
    builder.pointer_action.move_to_location(int(x), int(y))
    if click:
        builder.pointer_action.click()
    builder.perform()


def hover_label(browser) -> str:
    return " ".join(
        e.text for e in browser.find_elements(By.CSS_SELECTOR, ".hoverlayer .hovertext")
    )


def ask_district(browser, district: str) -> int:
    """Run the planner's question for water pipes in ``district``; the count it reports."""
    field = wait_for(lambda: browser.find_element(By.ID, "planner-district"), what="form")
    field.send_keys(district)
    browser.find_element(By.ID, "planner-run").click()
    text = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, "#planner-message .msg-ok").text,
        what="the answer's size",
    )
    return int(text.split()[1])


def expected_isolation(db: str, network: str, link: str) -> dict:
    from gis.analysis import fetch_isolation

    with psycopg.connect(db) as conn:
        return fetch_isolation(conn, network, link)


def test_a_pipe_on_the_planner_map_hovers_clicks_and_isolates(
    dash_server, dash_db, demo_networks, users, browser, screenshots
):
    set_viewport(browser, 1440, 900)
    browser_login(browser, dash_server.url, "zhou.min", users["zhou.min"])
    try:
        open_page(browser, dash_server.url + "/planner")
        found = ask_district(browser, "锦江区")
        assert found > 0
        x, y, (layer, pipe) = wait_for(
            lambda: browser.execute_script(HANDLE_JS, "#planner-map", None), what="pick handles"
        )
        assert layer == "water_pipes"
        # hovering a pipe shows its attributes by label, not only coordinates
        point_at(browser, x, y, click=False)
        label = wait_for(lambda: hover_label(browser) or None, what="hover label")
        assert pipe in label and "管径（mm）" in label and "材质" in label, label
        # a click opens its attributes, its alerts and "isolate this pipe"
        point_at(browser, x, y, click=True)
        wait_for(lambda: f"供水管线 {pipe}" in page_text(browser), what="the picked pipe")
        panel = browser.find_element(By.ID, "planner-pick").text
        assert "建设年份" in panel and "告警记录" in panel, panel
        isolate = browser.find_element(By.ID, "planner-isolate")
        assert isolate.is_enabled()
        isolate.click()
        plan = expected_isolation(dash_db, "water", pipe)["isolation"]
        valves = [*plan["sources_to_shut"], *plan["valves_to_close"]]
        shown = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, ".pick-isolation").text,
            what="the valve plan",
        )
        assert f"需关闭 {len(valves)} 处阀门/开关" in shown and all(v in shown for v in valves)
        assert f"停供用户 {plan['customers_without_supply']} 户" in shown
        drawn = dict(
            wait_for(
                lambda: browser.execute_script(ISOLATION_JS, "#planner-map") or None,
                what="the valve plan on the map",
            )
        )
        assert drawn.get("segment") and (drawn.get("valve_to_close") or not valves), drawn
        assert severe_console_messages(browser) == []
        browser.save_screenshot(str(screenshots / "planner-isolation.png"))
        # another pipe's plan replaces this one on the map (the answer's traces stay)
        traces = browser.execute_script(TRACE_COUNT_JS, "#planner-map")
        x2, y2, (_layer, other) = wait_for(
            lambda: next(
                (h for h in browser.execute_script(HANDLES_JS, "#planner-map") if h[2][1] != pipe),
                None,
            ),
            what="another pipe",
        )
        point_at(browser, x2, y2, click=True)
        wait_for(lambda: f"供水管线 {other}" in page_text(browser), what="the other pipe")
        browser.find_element(By.ID, "planner-isolate").click()
        wait_for(lambda: f"关阀方案：{other}" in page_text(browser), what="the other plan")
        assert browser.execute_script(TRACE_COUNT_JS, "#planner-map") == traces
    finally:
        browser_logout(browser, dash_server.url)
        set_viewport(browser, 1920, 1080)


def test_a_planner_picks_a_pipe_but_may_not_read_its_valve_plan(
    dash_server, dash_db, demo_networks, users
):
    """Valve plans are restricted data (decision 0071, as on the API's /isolation): the
    planner's button is disabled with the reason, and the server refuses the call anyway."""
    planner = http_login(dash_server.url, "li.na", users["li.na"])
    with psycopg.connect(dash_db) as conn:
        pipe = conn.execute(
            "SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' ORDER BY pipe_id LIMIT 1"
        ).fetchone()[0]
    click = {"points": [{"customdata": ["water_pipes", pipe]}]}
    resp = call_callback(
        planner,
        dash_server.url,
        "planner-map",
        {"planner-map.clickData": click, "lang.data": "en"},
        "planner-map.clickData",
    )["response"]
    panel = str(resp["planner-pick"]["children"])
    assert "Valve plans are restricted data" in panel and "'disabled': True" in panel
    resp = call_callback(
        planner,
        dash_server.url,
        "planner-isolate",
        {
            "planner-isolate.n_clicks": 1,
            "planner-picked.data": {"layer": "water_pipes", "id": pipe},
            "lang.data": "en",
        },
        "planner-isolate.n_clicks",
    )["response"]
    assert "restricted data" in str(resp["planner-isolation"]["children"])
    assert "planner-map" not in resp  # nothing drawn
    resp = call_callback(
        planner,
        dash_server.url,
        "planner-shutdown-record",
        {
            "planner-shutdown-record.n_clicks": 1,
            "planner-picked.data": {"layer": "water_pipes", "id": pipe},
            "planner-shutdown-start.value": "",
            "planner-shutdown-hours.value": "4",
            "lang.data": "en",
        },
        "planner-shutdown-record.n_clicks",
    )["response"]
    assert "needs the emergency or admin role" in str(resp["planner-shutdown-note"]["children"])
    with psycopg.connect(dash_db) as conn:
        assert conn.execute("SELECT count(*) FROM works").fetchone()[0] == 0


def test_a_pipe_on_the_map_page_clicks_and_isolates(
    dash_server, dash_db, demo_networks, users, browser, screenshots
):
    browser_login(browser, dash_server.url, "zhang.wei", users["zhang.wei"])  # emergency
    try:
        open_page(browser, dash_server.url + "/map?lang=en")
        wait_for(lambda: "sensors shown" in page_text(browser), what="the map")
        wait_for(lambda: browser.execute_script(MAP_READY_JS), what="the map drawn")
        # the whole city has the demo's 1,472 water pipes: too many to pick one
        wait_for(
            lambda: "zoom in to pick one" in browser.find_element(By.ID, "map-note").text,
            what="the signed-in user's first refresh",
        )

        def zoomed() -> bool:
            """Zoomed in, and the view's handles drawn (zoom again should a refresh that was
            under way draw the whole city over the zoom)."""
            if "zoom in to pick one" not in browser.find_element(By.ID, "map-note").text:
                return True
            if browser.execute_script(MAP_RANGE_JS) > 0.05:
                browser.execute_script(ZOOM_JS)
            return False

        wait_for(zoomed, timeout_s=40, what="the zoomed view's handles")
        x, y, (layer, link) = wait_for(
            lambda: browser.execute_script(HANDLE_JS, "#map-graph", None), what="pick handles"
        )
        point_at(browser, x, y, click=True)
        wait_for(lambda: link in browser.find_element(By.ID, "map-details").text, what="pick")
        details = browser.find_element(By.ID, "map-details").text
        assert "Installed" in details and "Alerts (newest" in details, details
        browser.find_element(By.ID, "map-isolate").click()
        network = {"water_pipes": "water", "gas_pipes": "gas", "power_lines": "power"}[layer]
        plan = expected_isolation(dash_db, network, link)["isolation"]
        shown = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, ".pick-isolation").text,
            what="the valve plan",
        )
        customers = plan["customers_without_supply"]
        assert f"{customers} customers without supply" in shown, shown
        drawn = dict(
            wait_for(
                lambda: browser.execute_script(ISOLATION_JS, "#map-graph") or None,
                what="the valve plan on the map",
            )
        )
        assert drawn.get("segment"), drawn
        assert severe_console_messages(browser) == []
        browser.save_screenshot(str(screenshots / "map-isolation.png"))
        # the plan recorded as a planned shutdown: tomorrow's works, six hours
        browser.find_element(By.ID, "map-shutdown-start").send_keys("2026-12-04T09:00")
        hours = browser.find_element(By.ID, "map-shutdown-hours")
        hours.send_keys(Keys.BACKSPACE, "6")  # the form's 4 hours become 6
        browser.find_element(By.ID, "map-shutdown-record").click()
        note = wait_for(
            lambda: browser.find_element(By.ID, "map-shutdown-note").text, what="the shutdown"
        )
        if plan["sources_to_shut"]:  # shutting a source outlet is the control room's call
            assert "shuts a source outlet" in note, note
            return
        assert f"for 6 h, {customers} customers" in note and "recorded" in note, note
        browser.save_screenshot(str(screenshots / "map-shutdown.png"))
        with psycopg.connect(dash_db) as conn:
            work = conn.execute(
                "SELECT kind, utility, asset_ids, starts_at, ends_at - starts_at, recorded_by"
                " FROM works ORDER BY work_id DESC LIMIT 1"
            ).fetchone()
            audited = conn.execute(
                "SELECT detail->>'link' FROM dashboard_audit WHERE action = 'shutdown_recorded'"
            ).fetchall()
        assert work[:3] == ("valve_operation", network, sorted(plan["valves_to_close"]))
        assert work[3] == datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # 09:00 in Chengdu
        assert work[4] == timedelta(hours=6) and work[5] == "zhang.wei"
        assert audited == [(link,)]
    finally:
        browser_logout(browser, dash_server.url)


def test_anonymous_map_has_no_pipe_attributes(dash_server, demo_networks, browser):
    """The map page is open, the networks' attributes are not: no pick handles, and a click
    sent anyway gets the login prompt."""
    open_page(browser, dash_server.url + "/map")
    wait_for(lambda: "个传感器" in page_text(browser), what="the map")
    wait_for(lambda: browser.execute_script(MAP_READY_JS), what="the map drawn")
    browser.execute_script(ZOOM_JS)
    wait_for(
        lambda: browser.execute_script(
            "const g = document.querySelector('#map-graph .js-plotly-plot');"
            "return g.layout.xaxis.range[0] > 104.04;"
        ),
        what="zoomed",
    )
    assert browser.execute_script(HANDLE_JS, "#map-graph", None) is None
    assert severe_console_messages(browser) == []


def test_the_form_is_for_planners_and_says_so_to_others(dash_server, users, browser):
    browser_login(browser, dash_server.url, "zhang.wei", users["zhang.wei"])
    try:
        open_page(browser, dash_server.url + "/planner")
        need = wait_for(lambda: browser.find_element(By.ID, "planner-need-role"), what="line")
        assert "规划人员或管理员" in need.text and "应急人员" in need.text, need.text
        assert "规划查询" in browser.find_element(By.ID, "planner-purpose").text
        assert browser.find_elements(By.ID, "planner-where") == []
        assert browser.find_elements(By.ID, "planner-run") == []
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)


def test_buttons_never_cover_a_field_at_1440x900(dash_server, users, browser):
    set_viewport(browser, 1440, 900)
    browser_login(browser, dash_server.url, "li.na", users["li.na"])
    try:
        open_page(browser, dash_server.url + "/planner")
        wait_for(lambda: browser.find_element(By.ID, "planner-alert-radius"), what="form")
        # every field, scrolled into view in its box, is the element under its own centre
        covered = browser.execute_script(
            """
            const out = [];
            const fields = document.querySelectorAll(
                '.planner-fields input:not(.dash-dropdown-focus-target), .planner-fields textarea,'
                + ' #planner-layer,'
                + ' #planner-near-layer');
            if (fields.length < 10) return ['too few fields', fields.length];
            for (const el of fields) {
              el.scrollIntoView({block: 'nearest'});
              const r = el.getBoundingClientRect();
              const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
              if (!hit || !(el === hit || el.contains(hit)))
                out.push([el.id || el.className, hit ? hit.outerHTML.slice(0, 80) : null]);
            }
            return out;
            """
        )
        assert covered == [], covered
        # and the buttons themselves are whole on the screen
        for button in ("planner-run", "planner-export-gpkg"):
            r = browser.find_element(By.ID, button).rect
            assert r["y"] >= 0 and r["y"] + r["height"] <= 900, (button, r)
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)
        set_viewport(browser, 1920, 1080)


def test_district_filter_keeps_pipes_by_their_midpoint(
    dash_server, dash_db, demo_networks, users, browser
):
    """docs/gis.md: a link belongs to the district its midpoint lies in. Pipes that cross into
    Jinjiang from a neighbour are not in Jinjiang's answer; pipes of Jinjiang that reach out
    of it are."""
    with psycopg.connect(dash_db) as conn:
        inside, crossing_in = conn.execute(
            "SELECT count(*) FILTER (WHERE ST_Intersects(d.geom, ST_LineInterpolatePoint(p.geom,"
            " 0.5))), count(*) FILTER (WHERE NOT ST_Intersects(d.geom,"
            " ST_LineInterpolatePoint(p.geom, 0.5)) AND ST_Intersects(d.geom, p.geom))"
            " FROM water_pipes p, districts d WHERE d.adcode = %s",
            (JINJIANG,),
        ).fetchone()
        crossers = {
            r[0]
            for r in conn.execute(
                "SELECT p.pipe_id FROM water_pipes p, districts d WHERE d.adcode = %s"
                " AND ST_Intersects(d.geom, p.geom)"
                " AND NOT ST_Intersects(d.geom, ST_LineInterpolatePoint(p.geom, 0.5))",
                (JINJIANG,),
            )
        }
    assert inside > 0 and crossing_in > 0, "the demo city has pipes crossing Jinjiang's border"
    browser_login(browser, dash_server.url, "li.na", users["li.na"])
    try:
        open_page(browser, dash_server.url + "/planner")
        assert ask_district(browser, "锦江区") == inside
        shown = {
            e.get_attribute("data-id")
            for e in browser.find_elements(By.CSS_SELECTOR, ".planner-table tbody tr")
        }
        assert shown and not shown & crossers
        drawn = browser.execute_script(
            "const g = document.querySelector('#planner-map .js-plotly-plot');"
            "const t = g.data.find(t => t.meta && t.meta.pick === 'handles');"
            "return t.customdata.map(c => c[1]);"
        )
        assert len(drawn) == inside and not set(drawn) & crossers
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)
