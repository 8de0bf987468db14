"""Planner page: the form asks the same question as the GIS function, exports open with
geopandas, invalid input gets a clear message, and only planners (and admins) get answers."""

from __future__ import annotations

import base64
import json

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import call_callback, http_login, open_page, page_text, wait_for

pytestmark = pytest.mark.browser

CENTRE = "104.0657,30.6598"


def form(**over) -> dict:
    values = {
        "planner-run.n_clicks": 1,
        "planner-layer.value": "water_pipes",
        "planner-where.value": "install_year<1990",
        "planner-district.value": None,
        "planner-point.value": CENTRE,
        "planner-radius.value": "1500",
        "planner-map.selectedData": None,
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
            assert len(path.read_text("utf-8-sig").splitlines()) == len(ids) + 1
        else:
            frame = gpd.read_file(path)
            assert len(frame) == len(ids) and set(frame["pipe_id"]) == ids
    browser.get(dash_server.url + "/logout")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"planner-radius.value": "-5"}, "radius must be more than 0"),
        ({"planner-radius.value": "1e9"}, "at most 100,000 m"),
        ({"planner-layer.value": "no_such_layer"}, "unknown layer"),
        ({"planner-where.value": "colour=red"}, "colour"),
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


def test_operator_gets_no_planner_answers(dash_server, users):
    opener = http_login(dash_server.url, "wang.fang", users["wang.fang"])
    resp = call_callback(opener, dash_server.url, "planner-run", form(), "planner-run.n_clicks")
    assert "Needs the planner or admin role" in message_of(resp)
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
    assert "0 features found" in message_of(run)
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
