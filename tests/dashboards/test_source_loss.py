"""Issue 16 item 1 in a real browser: a lost data source is shown as unknown, not as a city
on fire, on every page; every page says within 10 s when it is stale (the dashboard server
gone, or the data stream stopped) and carries on by itself."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from selenium.webdriver.common.by import By

from dashboards.i18n import t
from dashboards.model import DISTRICT_FILL, STATE_COLOURS
from tests.conftest import create_database, drop_database
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.conftest import (
    dashboard_settings,
    load_demo,
    start_dashboard,
    stop_dashboard,
)
from tests.dashboards.helpers import open_page, texts, wait_for

PAGES = ("/", "/wall", "/map", "/trust", "/alerts", "/sensor?id=wp-510104-1", "/planner")
STALE_WITHIN_S = 10.0


@pytest.fixture
def loss_db(stack, template_db):  # type: ignore[no-untyped-def]
    """The demo city of its own (this test stops its data): every sensor's last reading 3
    minutes ago."""
    name = "loss_" + uuid.uuid4().hex[:10]
    url = create_database(stack, name, template_db)
    with psycopg.connect(url) as conn:
        load_demo(conn)
    yield url
    drop_database(stack, name)


def _open_tabs(browser, base: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every page in a tab of its own, loaded and heard from the server once."""
    handles = []
    for i, path in enumerate(PAGES):
        if i:
            browser.switch_to.new_window("tab")
        open_page(browser, base + path)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#page > *"), what=path)
        handles.append(browser.current_window_handle)
    return handles


def _banner(browser) -> tuple[str | None, float | None, str]:  # type: ignore[no-untyped-def]
    """(kind, when it appeared [ms, the browser's clock], text) of the stale banner."""
    return browser.execute_script(
        "const b = document.getElementById('stale-banner');"
        "if (!b || b.style.display === 'none') return [null, null, ''];"
        "return [b.dataset.kind, Number(b.dataset.since), b.textContent];"
    )


def _close_tabs(browser, handles: list[str]) -> None:  # type: ignore[no-untyped-def]
    for h in handles[1:]:
        browser.switch_to.window(h)
        browser.close()
    browser.switch_to.window(handles[0])
    browser.get("about:blank")
    browser.get_log("browser")  # the outage's failed requests are expected


def test_every_page_says_within_10_s_that_the_server_is_gone(stack, dash_db, browser, tmp_path):
    """Seven pages open in seven tabs; the dashboard server stops: each says so (banner, page
    dimmed) within 10 s of the stop, measured on the browser's clock; it starts again on the
    same port: every banner goes by itself."""
    settings = dashboard_settings(stack, dash_db)
    server = start_dashboard(settings, tmp_path)
    handles: list[str] = []
    try:
        handles = _open_tabs(browser, server.url)
        for h in handles:
            browser.switch_to.window(h)
            wait_for(lambda: _banner(browser)[0] is None, what="no banner while all is well")
        stopped_ms = browser.execute_script("return Date.now();")
        stop_dashboard(server)
        delays = {}
        for path, h in zip(PAGES, handles, strict=True):
            browser.switch_to.window(h)
            _kind, since, text = wait_for(
                lambda: (b := _banner(browser))[0] == "server" and b,
                timeout_s=30,
                what=f"server-lost banner on {path}",
            )
            delays[path] = (since - stopped_ms) / 1000
            assert "连接已中断" in text
            opacity = browser.execute_script("return document.getElementById('page').style.opacity")
            assert opacity == "0.45", path  # the figures dimmed
        print("server gone -> banner [s]:", {p: round(d, 1) for p, d in delays.items()})
        assert max(delays.values()) <= STALE_WITHIN_S, delays
        server = start_dashboard(settings, tmp_path)
        for path, h in zip(PAGES, handles, strict=True):
            browser.switch_to.window(h)
            wait_for(lambda: _banner(browser)[0] is None, timeout_s=30, what=f"{path} back")
    finally:
        stop_dashboard(server)
        if handles:
            _close_tabs(browser, handles)


def _plot(browser, graph_id: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    return browser.execute_script(
        f"const g = document.querySelector('#{graph_id} .js-plotly-plot');"
        "return g && g.data ? g.data.map(d => ({name: d.name, fill: d.fillcolor || null,"
        " colour: d.marker ? d.marker.color : null, n: d.x ? d.x.length : 0,"
        " hatch: d.fillpattern ? d.fillpattern.shape : null})) : null;"
    )


def _stop_the_stream(loss_db: str) -> tuple[int, int]:
    """The issue's scene in the database: every sensor's last reading 3 minutes ago and the
    alert engine's one open source loss of the whole stream. (sensors reporting, sensors)."""
    with psycopg.connect(loss_db) as conn:
        conn.execute("UPDATE sensor_latest SET ts = now() - interval '3 minutes'")
        n = conn.execute("SELECT count(*) FROM sensor_latest").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM sensors").fetchone()[0]
        conn.execute(
            "INSERT INTO source_losses (scope, sensors, group_size, since, noticed_at,"
            " explanation_zh, explanation_en) SELECT 'stream', array_agg(sensor_id), count(*),"
            " now() - interval '3 minutes', now() - interval '1 minute', '测试', 'test'"
            " FROM sensor_latest"
        )
    return n, total


def _restart_the_stream(loss_db: str) -> None:
    """The data is back and the engine closed the loss."""
    with psycopg.connect(loss_db) as conn:
        conn.execute("UPDATE sensor_latest SET ts = now()")
        conn.execute("UPDATE source_losses SET state = 'closed', ended_at = now()")


def test_a_stopped_stream_is_unknown_not_red_on_every_page(
    stack, loss_db, browser, tmp_path, screenshots
):
    """The issue's scene, page by page (each opened afresh in one tab, so that no page waits
    behind six others): no district is red (they are unknown), the wall's online figure is 0 %,
    the trust page lists every silent sensor, the overview, the wall and the console name what
    stopped and since when; when the loss closes, the wall's line goes by itself."""
    n, total = _stop_the_stream(loss_db)
    settings = dashboard_settings(stack, loss_db)
    server = start_dashboard(settings, tmp_path)
    try:
        # the overview: what stopped and since when; no district red, all unknown
        open_page(browser, server.url + "/")
        line = wait_for(
            lambda: texts(browser, ".source-loss[data-scope='stream']")[0],
            what="the overview's source-loss line",
        )
        assert f"{n}/{n}" in line and "全部数据流" in line
        traces = wait_for(lambda: _plot(browser, "overview-map"), what="the overview's map")
        fills = {d["fill"] for d in traces if d["fill"]}
        assert fills == {DISTRICT_FILL["unknown"]}, fills
        # hatched as well as grey: unknown is told apart from quiet without colour
        assert {d["hatch"] for d in traces if d["fill"]} == {"/"}
        lost = [d for d in traces if d["colour"] == STATE_COLOURS["lost"]]
        assert lost and lost[0]["n"] == n and t("zh", "state.lost") in lost[0]["name"]
        browser.save_screenshot(str(screenshots / "overview-source-loss.png"))
        # the alert console: emergency staff see that the data stopped, above the alerts
        open_page(browser, server.url + "/alerts")
        console = wait_for(
            lambda: texts(browser, "#alerts-losses .source-loss[data-scope='stream']"),
            what="the console's source-loss line",
        )
        assert f"{n}/{n}" in console[0] and "全部数据流" in console[0]
        assert _uncut_grey_line(browser, "#alerts-losses .source-loss")
        # the trust page: every sensor not reporting, listed
        open_page(browser, server.url + "/trust")
        states = wait_for(
            lambda: (
                (
                    x := browser.execute_script(
                        "return [...document.querySelectorAll('#trust-silent li[data-sensor]')]"
                        ".map(e => e.dataset.state);"
                    )
                )
                and len(x) == total
                and x
            ),
            timeout_s=30,
            what="every sensor in the trust page's list",
        )
        assert set(states) == {"lost", "nodata"}
        # the wall's loss line in English, the longer text: whole in its two lines
        open_page(browser, server.url + "/wall?lang=en")
        english = wait_for(
            lambda: texts(browser, ".wall-headline-slot .source-loss[data-scope='stream']"),
            what="the wall's source-loss headline in English",
        )
        assert english[0].startswith("Source lost: no data from the whole data stream")
        assert _uncut_grey_line(browser, ".wall-headline-slot .source-loss")
        # the wall: nobody online, not a city on fire
        open_page(browser, server.url + "/wall")
        online = wait_for(
            lambda: texts(browser, "[data-kpi='kpi.reporting']"), what="the wall's figures"
        )
        assert online == ["0.0%", "0.0%", "0.0%"]
        wall_fills = wait_for(
            lambda: {d["fill"] for d in _plot(browser, "wall-map") or [] if d["fill"]},
            what="the wall's map drawn",
        )
        assert wall_fills == {DISTRICT_FILL["unknown"]}
        # its headline: the loss, in grey, whole; never "calm" while the stream is stopped
        headline = wait_for(
            lambda: texts(browser, ".wall-headline-slot .source-loss[data-scope='stream']"),
            what="the wall's source-loss headline",
        )
        assert f"{n}/{n}" in headline[0] and "全部数据流" in headline[0]
        assert not browser.find_elements(By.CSS_SELECTOR, ".wall-headline.calm")
        assert _uncut_grey_line(browser, ".wall-headline-slot .source-loss")
        browser.save_screenshot(str(screenshots / "wall-source-loss.png"))
        # the loss closes: the wall carries on by itself
        _restart_the_stream(loss_db)
        wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".source-loss"), what="line")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".wall-headline"), what="headline")
        assert severe_console_messages(browser) == []
    finally:
        stop_dashboard(server)
        browser.get("about:blank")


def test_every_page_says_the_stream_stopped_and_carries_on_by_itself(
    stack, loss_db, browser, tmp_path
):
    """Seven pages open in seven tabs while the whole stream is lost: each shows the stream
    banner naming it; when the loss closes, every banner goes by itself."""
    _stop_the_stream(loss_db)
    settings = dashboard_settings(stack, loss_db)
    server = start_dashboard(settings, tmp_path)
    handles: list[str] = []
    try:
        handles = _open_tabs(browser, server.url)
        for path, h in zip(PAGES, handles, strict=True):
            browser.switch_to.window(h)
            _kind, _since, text = wait_for(
                lambda: (b := _banner(browser))[0] == "stream" and b, what=f"banner on {path}"
            )
            assert "全部数据流" in text, path
        _restart_the_stream(loss_db)
        back_ms = browser.execute_script("return Date.now();")
        for path, h in zip(PAGES, handles, strict=True):
            browser.switch_to.window(h)
            wait_for(lambda: _banner(browser)[0] is None, what=f"{path} banner gone")
        gone_s = (browser.execute_script("return Date.now();") - back_ms) / 1000
        assert gone_s <= STALE_WITHIN_S * len(PAGES)
    finally:
        stop_dashboard(server)
        if handles:
            _close_tabs(browser, handles)


def test_emergency_staff_take_a_source_loss_on_and_a_planner_cannot(
    stack, loss_db, browser, tmp_path
):
    """The console offers "I'm on it" beside an open source loss; an emergency user's click
    records who took it on (stored, audited, shown to everyone in place of the button); a
    planner's call of the same callback is refused on the server and stores nothing."""
    from access import accounts
    from tests.dashboards.helpers import (
        browser_login,
        browser_logout,
        dependency_body,
        http_login,
        post_json,
        status_of,
    )

    _stop_the_stream(loss_db)
    with psycopg.connect(loss_db) as conn:
        accounts.write_user(conn, "zhang.wei", "Emergency-pass-2026", "emergency", "张伟")
        accounts.write_user(conn, "li.na", "Planner-pass-2026x", "planner", "李娜")
        (loss_id,) = conn.execute("SELECT loss_id FROM source_losses").fetchone()
    settings = dashboard_settings(stack, loss_db)
    server = start_dashboard(settings, tmp_path)
    try:
        # a planner may read the console but not act: refused before anything is stored
        planner = http_login(server.url, "li.na", "Planner-pass-2026x")
        with planner.open(server.url + "/_dash-dependencies", timeout=10) as resp:
            dep = next(d for d in json.loads(resp.read()) if "alerts-loss-result" in d["output"])
        button = {"id": {"type": "loss-ack", "loss": loss_id}, "property": "n_clicks"}
        body = dependency_body(dep, {"alerts-changed.data": 0, "lang.data": "zh"}, None)
        body["inputs"] = [[{**button, "value": 1}]]
        body["changedPropIds"] = [json.dumps(button["id"], separators=(",", ":")) + ".n_clicks"]
        call = lambda: post_json(planner, server.url, "/_dash-update-component", body)  # noqa: E731
        assert status_of(call) == 403
        browser_login(browser, server.url, "zhang.wei", "Emergency-pass-2026")
        open_page(browser, server.url + "/alerts")
        button = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, "#alerts-losses button.loss-ack"),
            what="the take-it-on button",
        )
        assert button.text == "我来处理"
        button.click()
        wait_for(
            lambda: "已接手" in browser.find_element(By.ID, "alerts-loss-result").text,
            what="the confirmation",
        )
        note = wait_for(
            lambda: texts(browser, "#alerts-losses .loss-ack-note"), what="who took it on"
        )
        assert "zhang.wei" in note[0]
        assert not browser.find_elements(By.CSS_SELECTOR, "#alerts-losses button.loss-ack")
        with psycopg.connect(loss_db) as conn:
            who = conn.execute(
                "SELECT acknowledged_by, acknowledged_at IS NOT NULL, state FROM source_losses"
            ).fetchone()
            audited = conn.execute(
                "SELECT username, detail->>'loss' FROM dashboard_audit"
                " WHERE action = 'source_loss_ack'"
            ).fetchall()
            refused = conn.execute(
                "SELECT count(*) FROM dashboard_audit WHERE username = 'li.na'"
                " AND action LIKE 'refused:%%'"
            ).fetchone()[0]
        assert who == ("zhang.wei", True, "open")  # still open: it closes when data returns
        assert audited == [("zhang.wei", str(loss_id))]
        assert refused == 1
        assert severe_console_messages(browser) == []
        browser_logout(browser, server.url)
    finally:
        stop_dashboard(server)
        browser.get("about:blank")


def _uncut_grey_line(browser, css: str) -> bool:  # type: ignore[no-untyped-def]
    """The line's whole text is shown, on the grey of the unknown (not an alarm's red)."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e.scrollHeight <= e.clientHeight + 1"
        " && getComputedStyle(e).backgroundColor === 'rgb(58, 68, 82)';",
        css,
    )


def _context(settings):  # type: ignore[no-untyped-def]
    """The dashboard's context on ``settings.database_url``, on the wall clock."""
    from datetime import UTC, datetime

    from dashboards.context import AppContext
    from dashboards.queries import Reader

    url = settings.database_url
    return AppContext(
        settings=settings,
        reader=Reader(url),
        writer=Reader(url, read_only=False, max_idle=1),
        clock=lambda: datetime.now(UTC),
    )


def test_the_heartbeat_says_what_stopped_the_data(db_url: str) -> None:
    """What every page's watchdog is told (``/api/heartbeat``): nothing while all is well; the
    data intake stopped when no ingestion worker has beaten for 10 s (nothing reaches the
    database: dimmed); a district's source loss by name (not dimmed: the rest of the city
    is live); the database gone."""

    from cityops.kernel.settings import Settings
    from dashboards.app import heartbeat_body

    def beat(url: str = db_url) -> dict:  # type: ignore[type-arg]
        return heartbeat_body(_context(Settings(database_url=url)))

    quiet = beat()
    assert (quiet["db"], quiet["stream"], quiet["dim"]) == (True, None, False)
    assert "连接已中断" in quiet["texts"]["zh"]["stale.server_lost"]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO districts (adcode, name_zh, name_en, geom) VALUES (510104, '锦江区',"
            " 'Jinjiang', ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(104.08, 30.65), 4326),"
            " 0.01)))"
        )
        conn.execute(
            "INSERT INTO source_losses (scope, scope_value, sensors, group_size, since,"
            " noticed_at, explanation_zh, explanation_en) VALUES ('district', '510104',"
            " '{a,b,c,d,e}', 6, now() - interval '5 minutes', now(), '测试', 'test')"
        )
        conn.execute(
            "INSERT INTO ingest_workers (client_id, heartbeat_at) VALUES ('ingest-1', now())"
        )
    district = beat()
    assert "锦江区的传感器" in district["stream"]["zh"] and not district["dim"]
    assert "the sensors of Jinjiang" in district["stream"]["en"]
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE ingest_workers SET heartbeat_at = now() - interval '30 seconds'")
    intake = beat()
    assert "数据接入已停止" in intake["stream"]["zh"] and intake["dim"]
    gone = beat(db_url.rsplit("/", 1)[0] + "/no_such_database")
    assert (gone["db"], gone["stream"]) == (False, None)


def test_a_metered_area_whose_meter_is_lost_is_unknown_not_alerting(db_url: str) -> None:
    """The planner's metered areas (dashboards/areas_map.py): while a meter of an area is in an
    open source loss its balance is not computed (alerts/source_loss.py), so the area is drawn
    grey and hatched as unknown, not red, even with a balance alert still open."""
    import alerts.api
    from dashboards.areas_map import COLOURS, area_traces, fetch_area_layer

    square = {
        "type": "Polygon",
        "coordinates": [[[104.06, 30.65], [104.07, 30.65], [104.07, 30.66], [104.06, 30.65]]],
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid in ("wf-a", "wf-b"):
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
                " (%s, 'water', 'water_flow', %s, ST_SetSRID(ST_MakePoint(104.06, 30.65), 4326))",
                (sid, sid),
            )
        area = {
            "area_id": "dma-1",
            "name": "测试分区",
            "meters": [("wf-a", 1, False), ("wf-b", -1, False)],
            "members": [],
            "boundary": square,
        }
        alerts.api.write_metered_areas(conn, "test", [area], origin="import")
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " message_zh, message_en) VALUES ('wf-a', 'water', 'flow', 'water_burst',"
            " 'critical', now(), 80, '爆管', 'burst')"
        )
        (alerting,) = area_traces(fetch_area_layer(conn), "zh")
        assert alerting["meta"]["condition"] == "alerting"
        assert alerting["line"]["color"] == COLOURS["alerting"]
        conn.execute(
            "INSERT INTO source_losses (scope, scope_value, sensors, group_size, since,"
            " noticed_at, explanation_zh, explanation_en) VALUES ('utility', 'water', '{wf-b}',"
            " 2, now() - interval '5 minutes', now(), '测试', 'test')"
        )
        (unknown,) = area_traces(fetch_area_layer(conn), "zh")
    assert unknown["meta"]["condition"] == "unknown"
    assert unknown["line"]["color"] == COLOURS["unknown"] and unknown["fillpattern"]["shape"]
    assert "水量平衡状态未知" in unknown["text"]


def test_the_issue_on_the_real_path_a_paused_bank_is_one_loss_and_no_city_event(
    db_url: str, settings
) -> None:  # type: ignore[no-untyped-def]
    """The issue's scene through every process: ingestion and the alert engine run, a bank of
    12 sensors publishes, pauses, publishes again. While it pauses the wall's figures say
    nobody is online (12 silent, all of them lost), with no open alert, no incident and no
    customer without supply, and every page's watchdog names the stopped stream; when the data
    returns the loss closes by itself, everyone is online again and nothing was raised."""
    import signal

    from cityops.kernel.mqtt import Publisher
    from dashboards.app import heartbeat_body
    from dashboards.context import AppContext
    from dashboards.pages import wall
    from tests.alerts.conftest import EngineProcess
    from tests.alerts.test_source_loss import publish_bank, register_fast_bank
    from tests.conftest import start_cityops
    from tests.waiting import wait_for as wait

    ids = register_fast_bank(db_url, 12)

    def rows(sql: str) -> list:  # type: ignore[type-arg]
        with psycopg.connect(db_url) as conn:
            return conn.execute(sql).fetchall()

    def context() -> AppContext:
        return _context(settings)

    def water():  # type: ignore[no-untyped-def]
        return next(f for f in wall.read_wall(context()).figures if f.utility == "water")

    ingest = start_cityops(settings, "ingest")
    engine = EngineProcess(settings)
    pub = Publisher(settings.mqtt_url, "test-issue-16-pub")
    try:
        wait(lambda: rows("SELECT 1 FROM ingest_workers WHERE state = 'running'"), 30)
        engine.start(30.0)
        pub.__enter__()
        publish_bank(pub, ids, 6.0)
        assert (water().sensors, water().reporting) == (12, 12)
        wait(lambda: rows("SELECT 1 FROM source_losses WHERE state = 'open'"), 20, what="loss")
        during = wait(lambda: (f := water()).lost == 12 and f, 10, what="the bank lost")
        assert (during.reporting, during.silent, during.open_alerts) == (0, 12, 0)
        assert (during.customers_cut, during.incidents_open) == (0, 0)
        beat = heartbeat_body(context())
        assert "全部数据流" in beat["stream"]["zh"] and beat["dim"]
        time.sleep(3.0)  # past the silent detector's 3 x 1 s: still nothing raised
        assert rows("SELECT kind FROM alerts") == [] and rows("SELECT 1 FROM incidents") == []
        publish_bank(pub, ids, 6.0)
        wait(lambda: rows("SELECT 1 FROM source_losses WHERE state = 'closed'"), 20, what="end")
        after = wait(lambda: (f := water()).reporting == 12 and f, 10, what="online again")
        assert (after.lost, after.open_alerts) == (0, 0)
        assert heartbeat_body(context())["stream"] is None
        assert rows("SELECT kind FROM alerts") == [] and rows("SELECT 1 FROM incidents") == []
    finally:
        pub.__exit__(None, None, None)
        if engine.proc is not None:
            engine.stop()
        ingest.send_signal(signal.SIGTERM)
        ingest.communicate(timeout=30)


def test_unknown_is_neither_red_nor_silent_and_online_plus_silent_is_everyone() -> None:
    """The pure rules: a district at least half lost is unknown (a critical alarm still wins),
    a cell with 20 % of its sensors lost is lost; online + not reporting = sensors."""
    from dashboards.model import DistrictSummary, GridCell, cell_state, district_condition
    from dashboards.snapshot import SensorStates, not_reporting_by, utility_figures

    base = dict(adcode=1, name_zh="a", name_en="a", sensors=6, nodata=0)
    lost = DistrictSummary(**base, alarm=0, silent=6, open_alerts=2, worst_severity="major", lost=3)
    assert district_condition(lost) == "unknown"
    few = DistrictSummary(**base, alarm=0, silent=6, open_alerts=2, worst_severity="major", lost=2)
    assert district_condition(few) == "alarm"
    critical = DistrictSummary(
        **base, alarm=0, silent=6, open_alerts=1, worst_severity="critical", lost=6
    )
    assert district_condition(critical) == "critical"
    assert cell_state(GridCell(0, 0, 10, 0, 3, 0, lost=2)) == "lost"
    assert cell_state(GridCell(0, 0, 10, 1, 3, 0, lost=3)) == "alarm"
    rows = [
        (f"s{i}", "n", u, "t", 510104, 104.0, 30.0, st, None)
        for i, (u, st) in enumerate(
            [
                ("water", "normal"),
                ("water", "alarm"),
                ("water", "lost"),
                ("water", "silent"),
                ("water", "nodata"),
                ("gas", "lost"),
            ]
        )
    ]
    states = SensorStates.from_rows(rows)
    water = next(f for f in utility_figures(states, {}, {}, {}) if f.utility == "water")
    assert (water.reporting, water.silent, water.lost, water.nodata) == (2, 2, 1, 1)
    assert water.reporting + water.not_reporting == water.sensors == 5
    assert not_reporting_by(states, "utility") == {"water": 3, "gas": 1}
    assert not_reporting_by(states, "district") == {510104: 4}
