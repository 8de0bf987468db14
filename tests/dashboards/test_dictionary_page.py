"""The data dictionary page (issue 17 item 6): open to everyone, the fields of every layer with
their names, units and the rules the database enforces, and the same as a file."""

from __future__ import annotations

import csv
import io
import json

import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import call_callback, open_page, page_text, wait_for

pytestmark = pytest.mark.browser


def test_anyone_reads_the_dictionary_in_chinese(dash_server, browser, screenshots):
    open_page(browser, dash_server.url + "/dictionary?lang=zh")
    wait_for(lambda: "传感器类型" in page_text(browser), what="the dictionary")
    pipes = browser.find_element(By.ID, "dict-water_pipes").text
    assert "供水管线" in pipes and "管径（mm）" in pipes and "数据分级：" in pipes
    nodes = browser.find_element(By.ID, "dict-water_nodes").text
    for code, name in (("junction", "连接节点"), ("valve", "阀门"), ("reservoir", "水源")):
        assert f"{code} {name}" in nodes, nodes
    assert "≥ 1850，≤ 2100" in pipes  # install_year, from the table's CHECK constraint
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "dictionary.png"))


def test_the_dictionary_downloads_as_json_and_csv(dash_server):
    def fetch(button: str) -> dict:
        values = {"dict-json.n_clicks": None, "dict-csv.n_clicks": None, "lang.data": "en"}
        values[f"{button}.n_clicks"] = 1
        resp = call_callback(None, dash_server.url, button, values, f"{button}.n_clicks")
        return resp["response"]["dict-download"]["data"]

    got = fetch("dict-json")
    doc = json.loads(got["content"])
    assert got["filename"] == "cityops-dictionary.json" and doc["name"] == "cityops data dictionary"
    got = fetch("dict-csv")
    assert got["content"].startswith("\ufeffkind,layer,name,name_zh,name_en,unit")
    rows = list(csv.DictReader(io.StringIO(got["content"].lstrip("\ufeff"))))
    diameter = next(r for r in rows if r["layer"] == "water_pipes" and r["name"] == "diameter_mm")
    assert (diameter["name_zh"], diameter["unit"], diameter["min"]) == ("管径（mm）", "mm", "0.0")
