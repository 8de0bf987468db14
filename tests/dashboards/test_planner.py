"""Planner page: the form asks the same question as the GIS function, exports open with
geopandas, invalid input gets a clear message, and only planners (and admins) get answers."""

from __future__ import annotations

import base64
import json
import re

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    call_callback,
    callback_status,
    http_login,
    open_page,
    page_text,
    wait_for,
)

pytestmark = pytest.mark.browser

CENTRE = "104.0657,30.6598"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


def form(**over) -> dict:
    values = {
        "planner-run.n_clicks": 1,
        "planner-layer.value": "water_pipes",
        "planner-where.value": "install_year<1990",
        "planner-district.value": None,
        "planner-point.value": CENTRE,
        "planner-radius.value": "1500",
        "planner-map.selectedData": None,
        "planner-alert-kind.value": "threshold_low",
        "planner-alert-quantity.value": "pressure",
        "planner-alert-days.value": "365",
        "lang.data": "en",
    }
    values.update(over)
    return values


def message_of(resp: dict) -> str:
    return json.dumps(resp["response"].get("planner-message", {}), ensure_ascii=False)


def test_planner_form_matches_gis_and_exports(
    dash_server, dash_db, demo_networks, users, browser, screenshots, tmp_path
):
    import geopandas as gpd

    from gis.filters import build_query
    from gis.planner import fetch_planner_query

    with psycopg.connect(dash_db) as conn:
        expected = fetch_planner_query(
            conn,
            build_query(
                "water_pipes", where=["install_year<1990"], point=CENTRE, radius_m=1500, limit=5000
            ),
        )
    ids = {f["id"] for f in expected["features"]}
    assert ids, "the demo network has old pipes near the centre"

    # in the browser, as a planner
    open_page(browser, dash_server.url + "/login")
    browser.find_element(By.ID, "username").send_keys("li.na")
    browser.find_element(By.ID, "password").send_keys(users["li.na"])
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: "li.na" in page_text(browser), what="signed in")
    open_page(browser, dash_server.url + "/planner")
    wait_for(lambda: browser.find_element(By.ID, "planner-where"), what="form").send_keys(
        "install_year<1990"
    )
    browser.find_element(By.ID, "planner-point").send_keys(CENTRE)
    browser.find_element(By.ID, "planner-radius").send_keys("1500")
    browser.find_element(By.ID, "planner-run").click()
    wait_for(lambda: f"找到 {len(ids)} 个要素" in page_text(browser), what="result count")
    shown = {
        e.get_attribute("data-id")
        for e in browser.find_elements(By.CSS_SELECTOR, ".planner-table tbody tr")
    }
    assert shown and shown <= ids and len(shown) == min(len(ids), 200)
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "planner.png"))

    # exports, through the same callback the buttons use
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    spec = call_callback(opener, dash_server.url, "planner-run", form(), "planner-run.n_clicks")
    spec = spec["response"]["planner-query"]["data"]
    for fmt in ("geojson", "gpkg", "csv"):
        resp = call_callback(
            opener,
            dash_server.url,
            "planner-export-csv",
            {f"planner-export-{fmt}.n_clicks": 1, "planner-query.data": spec, "lang.data": "en"},
            f"planner-export-{fmt}.n_clicks",
        )
        download = resp["response"]["planner-download"]["data"]
        path = tmp_path / download["filename"]
        path.write_bytes(base64.b64decode(download["content"]))
        if fmt == "csv":
            lines = path.read_text("utf-8-sig").splitlines()
            assert len(lines) == len(ids) + 1
            # internal data: every row says who took it, when, and its class
            assert lines[0].endswith("cityops_export") and "by=li.na;" in lines[1]
            assert "classification=internal" in lines[1]
        else:
            frame = gpd.read_file(path)
            assert len(frame) == len(ids) and set(frame["pipe_id"]) == ids
        if fmt == "geojson":
            assert json.loads(path.read_text())["cityops:export"]["by"] == "li.na"
        if fmt == "gpkg":
            import pyogrio

            meta = pyogrio.read_info(path)["dataset_metadata"]
            assert json.loads(meta["cityops_export"])["classification"] == "internal"
    with psycopg.connect(dash_db) as conn:
        audited = conn.execute(
            "SELECT actor, target, detail ->> 'format', (detail ->> 'features')::int"
            " FROM security_audit WHERE action = 'export' ORDER BY id"
        ).fetchall()
    assert audited == [("li.na", "water_pipes", f, len(ids)) for f in ("geojson", "gpkg", "csv")]
    browser_logout(browser, dash_server.url)


def test_a_planner_reads_no_restricted_layer_on_the_page_either(dash_server, users):
    """Facilities are restricted (access.classes): the API refuses them to a planner, and so do
    the page's question and its export, on the server."""
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    asked = form(**{"planner-layer.value": "facilities", "planner-where.value": None})
    resp = call_callback(opener, dash_server.url, "planner-run", asked, "planner-run.n_clicks")
    assert resp["response"]["planner-query"]["data"] is None
    assert "restricted layer" in message_of(resp)
    spec = {"layer": "facilities"}
    resp = call_callback(
        opener,
        dash_server.url,
        "planner-export-csv",
        {"planner-export-csv.n_clicks": 1, "planner-query.data": spec, "lang.data": "en"},
        "planner-export-csv.n_clicks",
    )
    assert "planner-download" not in resp["response"]
    assert "restricted layer" in message_of(resp)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"planner-radius.value": "-5"}, "radius must be more than 0"),
        ({"planner-radius.value": "1e9"}, "at most 100,000 m"),
        ({"planner-layer.value": "no_such_layer"}, "There is no layer no_such_layer"),
        ({"planner-where.value": "colour=red"}, "Water pipes has no field colour. Fields:"),
        (
            {
                "planner-radius.value": None,
                "planner-point.value": None,
                # a bow tie: the lasso crossed itself
                "planner-map.selectedData": {
                    "lassoPoints": {
                        "x": [104.0, 104.1, 104.0, 104.1],
                        "y": [30.6, 30.7, 30.7, 30.6],
                    }
                },
            },
            "not valid",
        ),
    ],
)
def test_invalid_planner_input_gets_a_clear_message(dash_server, users, change, reason):
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    resp = call_callback(
        opener, dash_server.url, "planner-run", form(**change), "planner-run.n_clicks"
    )
    text = message_of(resp)
    assert "Cannot ask this" in text and reason in text, text
    assert "Traceback" not in text
    assert not CJK.search(text), text  # wholly in the page's language


def test_operator_gets_no_planner_answers(dash_server, users):
    opener = http_login(dash_server.url, "wang.fang", users["wang.fang"])
    # asking is refused by the server before the callback runs; the empty map is not
    assert (
        callback_status(opener, dash_server.url, "planner-run", form(), "planner-run.n_clicks")
        == 403
    )
    clear = form(**{"planner-clear.n_clicks": 1})
    resp = call_callback(opener, dash_server.url, "planner-run", clear, "planner-clear.n_clicks")
    assert resp["response"]["planner-query"]["data"] is None


def test_exporting_an_empty_answer_gets_a_message(dash_server, demo_networks, users):
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    run = call_callback(
        opener,
        dash_server.url,
        "planner-run",
        form(**{"planner-where.value": "install_year<1800"}),
        "planner-run.n_clicks",
    )
    assert "No features match" in message_of(run)
    spec = run["response"]["planner-query"]["data"]

    def export(fmt: str) -> dict:
        return call_callback(
            opener,
            dash_server.url,
            "planner-export-csv",
            {f"planner-export-{fmt}.n_clicks": 1, "planner-query.data": spec, "lang.data": "en"},
            f"planner-export-{fmt}.n_clicks",
        )["response"]

    # a GeoPackage needs a geometry: a message instead of a server error (and no file)
    gpkg = export("gpkg")
    assert "Nothing to export as GeoPackage" in message_of({"response": gpkg})
    assert "planner-download" not in gpkg
    # CSV and GeoJSON can say "nothing": a header, an empty collection
    csv_body = base64.b64decode(export("csv")["planner-download"]["data"]["content"])
    assert len(csv_body.decode("utf-8-sig").splitlines()) == 1
    geojson = json.loads(base64.b64decode(export("geojson")["planner-download"]["data"]["content"]))
    assert geojson["features"] == []


def run_form(opener, base: str, **change) -> dict:
    """The planner's run callback with the whole form, as the browser sends it."""
    values = form(
        **{
            "planner-point.value": None,
            "planner-radius.value": None,
            "planner-near-layer.value": None,
            "planner-near-distance.value": None,
            "planner-near-where.value": None,
            "planner-alert-kind.value": "threshold_low",
            "planner-alert-quantity.value": "pressure",
            "planner-alert-days.value": "365",
            "planner-alert-min.value": None,
            "planner-alert-radius.value": None,
        }
    )
    values.update(change)
    return call_callback(opener, base, "planner-run", values, "planner-run.n_clicks")["response"]


def export_ids(opener, base: str, spec: dict) -> set[str]:
    """The ids in the GeoJSON export of ``spec`` (asked again on the server: every feature)."""
    resp = call_callback(
        opener,
        base,
        "planner-export-csv",
        {"planner-export-geojson.n_clicks": 1, "planner-query.data": spec, "lang.data": "en"},
        "planner-export-geojson.n_clicks",
    )
    body = json.loads(base64.b64decode(resp["response"]["planner-download"]["data"]["content"]))
    return {f["properties"]["pipe_id"] for f in body["features"]}


def test_near_another_layer_matches_gis(dash_server, dash_db, demo_networks, users):
    from gis.filters import build_query
    from gis.planner import fetch_planner_query

    def gis_ids(**kw) -> set[str]:
        with psycopg.connect(dash_db) as conn:
            q = build_query("water_pipes", where=["install_year<1990"], limit=5000, **kw)
            return {f["id"] for f in fetch_planner_query(conn, q)["features"]}

    expected = gis_ids(near=["facilities:500:kind=school"])
    assert expected and len(expected) < len(gis_ids()), "the near condition must narrow it"

    # facilities are restricted data (access.classes): an admin asks, a planner may not
    opener = http_login(dash_server.url, "zhou.min", users["zhou.min"])
    resp = run_form(
        opener,
        dash_server.url,
        **{
            "planner-near-layer.value": "facilities",
            "planner-near-distance.value": "500",
            "planner-near-where.value": "kind=school",
        },
    )
    assert f"{len(expected)} features found" in message_of({"response": resp})
    spec = resp["planner-query"]["data"]
    assert spec["near"] == {"layer": "facilities", "distance": "500", "where": ["kind=school"]}
    assert export_ids(opener, dash_server.url, spec) == expected
    table = json.dumps(resp["planner-table"], ensure_ascii=False)
    assert "distance_m" not in table  # no point given: no distance column

    # within 800 m of a hospital: another question, another answer, same as the GIS function
    resp = run_form(
        opener,
        dash_server.url,
        **{
            "planner-near-layer.value": "facilities",
            "planner-near-distance.value": "800",
            "planner-near-where.value": "kind=hospital",
        },
    )
    spec = resp["planner-query"]["data"]
    assert export_ids(opener, dash_server.url, spec) == gis_ids(
        near=["facilities:800:kind=hospital"]
    )


@pytest.fixture(scope="module")
def alert_history(dash_db, demo_networks) -> tuple[str, set[str]]:
    """Closed low-pressure alerts on sensors of four demo pipes: (material, the pipes of that
    material with at least 2 such alerts in the last 30 days)."""
    with psycopg.connect(dash_db) as conn:
        material = conn.execute(
            "SELECT material FROM water_pipes WHERE link_kind = 'pipe' AND material IS NOT NULL"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        same = [
            r[0]
            for r in conn.execute(
                "SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' AND material = %s"
                " ORDER BY pipe_id DESC LIMIT 3",
                (material,),
            )
        ]
        other = conn.execute(
            "SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' AND material <> %s"
            " ORDER BY pipe_id DESC LIMIT 1",
            (material,),
        ).fetchone()[0]
        p1, p2, p3 = same
        # (pipe, kind, days ago) of each alert: p1 3 recent, p2 2 recent and 1 old,
        # p3 1 recent low and 2 recent high, the other material's pipe 3 recent
        history = [(p1, "threshold_low", d) for d in (1, 5, 9)]
        history += [(p2, "threshold_low", d) for d in (2, 20, 60)]
        history += [(p3, "threshold_low", 3), (p3, "threshold_high", 4), (p3, "threshold_high", 6)]
        history += [(other, "threshold_low", d) for d in (1, 2, 3)]
        with conn.transaction():
            for i, pipe in enumerate((p1, p2, p3, other)):
                conn.execute(
                    "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode,"
                    " asset_id, status, geom) SELECT %s, 'water', 'water_pressure', %s, 510104,"
                    " pipe_id, 'retired', ST_LineInterpolatePoint(geom, 0.5) FROM water_pipes"
                    " WHERE pipe_id = %s",
                    (f"wp-hist-{i}", f"历史告警测试 {i}", pipe),
                )
            sensor_of = {p1: "wp-hist-0", p2: "wp-hist-1", p3: "wp-hist-2", other: "wp-hist-3"}
            for pipe, kind, days in history:
                conn.execute(
                    "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at,"
                    " cleared_at, state, value, limit_value, message_zh, message_en)"
                    " VALUES (%s, 'water', 'pressure', %s, 'major',"
                    " now() - make_interval(days => %s),"
                    " now() - make_interval(days => %s) + interval '10 minutes', 'closed', 150, 200,"
                    " '历史告警', 'old alert')",
                    (sensor_of[pipe], kind, days, days),
                )
    return material, {p1, p2}


def test_alert_history_question_in_the_browser_matches_gis(
    dash_server, dash_db, alert_history, users, browser
):
    from gis.filters import build_query
    from gis.planner import fetch_planner_query

    material, pipes = alert_history
    with psycopg.connect(dash_db) as conn:
        expected = fetch_planner_query(
            conn,
            build_query(
                "water_pipes",
                where=[f"material={material}"],
                alerts="threshold_low:pressure:30:1",  # more than 1 = at least 2
                limit=5000,
            ),
        )
    counts = {f["id"]: f["properties"]["alert_count"] for f in expected["features"]}
    assert set(counts) == pipes and sorted(counts.values()) == [2, 3], counts

    browser_login(browser, dash_server.url, "li.na", users["li.na"])
    try:
        open_page(browser, dash_server.url + "/planner")
        wait_for(lambda: browser.find_element(By.ID, "planner-where"), what="form").send_keys(
            f"material={material}"
        )
        days = browser.find_element(By.ID, "planner-alert-days")
        days.send_keys(Keys.CONTROL, "a")  # clear() does not reach React's state
        days.send_keys("30")
        browser.find_element(By.ID, "planner-alert-min").send_keys("2")
        browser.find_element(By.ID, "planner-run").click()
        wait_for(lambda: "找到 2 个要素" in page_text(browser), what="result count")
        rows = browser.find_elements(By.CSS_SELECTOR, ".planner-table tbody tr")
        assert {r.get_attribute("data-id") for r in rows} == pipes
        heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".planner-table th")]
        assert heads[-1] == "告警次数", heads  # fields by label
        shown = {
            r.get_attribute("data-id"): r.find_elements(By.TAG_NAME, "td")[-1].text for r in rows
        }
        assert shown == {k: str(v) for k, v in counts.items()}
        # a bad count gets a message in the form, not a traceback
        count = browser.find_element(By.ID, "planner-alert-min")
        count.send_keys(Keys.CONTROL, "a")
        count.send_keys("two")
        browser.find_element(By.ID, "planner-run").click()
        wait_for(
            lambda: "查询条件有误：至少告警次数应为数字，收到“two”" in page_text(browser),
            what="message",
        )
        assert "Traceback" not in page_text(browser)
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, dash_server.url)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"planner-near-layer.value": "facilities"}, "Near: how far from Critical facilities?"),
        ({"planner-near-distance.value": "500"}, "Near: choose the other layer"),
        (
            {"planner-near-layer.value": "no_such", "planner-near-distance.value": "5"},
            "There is no layer no_such",
        ),
        (
            {"planner-near-layer.value": "facilities", "planner-near-distance.value": "-5"},
            "The distance must be more than 0 and at most 10,000 m",
        ),
        (
            {"planner-near-layer.value": "facilities", "planner-near-distance.value": "1e9"},
            "at most 10,000 m",
        ),
        (
            {"planner-near-layer.value": "facilities", "planner-near-distance.value": "nan"},
            "The distance must be a number",
        ),
        (
            {
                "planner-near-layer.value": "facilities",
                "planner-near-distance.value": "500",
                "planner-near-where.value": "colour=red",
            },
            "colour",
        ),
        ({"planner-alert-min.value": "0"}, "The number of alerts must be more than 0"),
        ({"planner-alert-min.value": "2.5"}, "must be a whole number"),
        (
            {"planner-alert-min.value": "2", "planner-alert-days.value": "-1"},
            "The number of days must be more than 0",
        ),
        (
            {"planner-alert-min.value": "2", "planner-alert-days.value": None},
            "The number of days must be a number",
        ),
        (
            {"planner-alert-min.value": "2", "planner-alert-kind.value": "low'; drop table"},
            "The alert kind is a code like threshold_low",
        ),
        (
            {"planner-alert-min.value": "2", "planner-alert-radius.value": "99999"},
            "The alert radius must be more than 0 and at most 10,000 m",
        ),
    ],
)
def test_invalid_near_and_alert_input_gets_a_clear_message(dash_server, users, change, reason):
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    resp = run_form(opener, dash_server.url, **change)
    text = message_of({"response": resp})
    assert "Cannot ask this" in text and reason in text, text
    assert not CJK.search(text), text
    assert resp["planner-query"]["data"] is None


def test_a_stored_spec_from_elsewhere_is_checked_again(dash_server, users):
    """The export takes the spec from the browser: junk in it is a message, not a 500."""
    opener = http_login(dash_server.url, "li.na", users["li.na"])
    for spec in (
        {"layer": "water_pipes", "near": {"layer": "facilities", "distance": [1]}},
        {"layer": "water_pipes", "alerts": {"kind": 5, "days": "1", "at_least": "1"}},
        {"layer": "water_pipes", "where": [{"x": 1}], "point": ["a"], "radius": {"r": 1}},
        {"layer": "water_pipes", "alerts": "threshold_low:pressure:30:1"},
    ):
        resp = call_callback(
            opener,
            dash_server.url,
            "planner-export-csv",
            {"planner-export-csv.n_clicks": 1, "planner-query.data": spec, "lang.data": "en"},
            "planner-export-csv.n_clicks",
        )["response"]
        assert "Cannot ask this" in message_of({"response": resp}), (spec, resp)
