"""The alert console's impact view: valves to close, customers and facilities without supply,
from the GIS network of the alert's pipe."""

from __future__ import annotations

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import open_page, page_text, texts, wait_for

pytestmark = pytest.mark.browser


def test_console_shows_isolation_for_an_alert_on_a_main(
    dash_server, dash_db, demo_networks, browser, screenshots
):
    from gis.analysis import fetch_isolation

    with psycopg.connect(dash_db) as conn:
        # a pipe whose isolation cuts customers off
        pipe = None
        for (pipe_id,) in conn.execute(
            "SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' ORDER BY pipe_id LIMIT 200"
        ).fetchall():
            iso = fetch_isolation(conn, "water", pipe_id, with_geometry=False)["isolation"]
            if iso["customers_without_supply"] > 0 and iso["valves_to_close"]:
                pipe = pipe_id
                break
        assert pipe, "no pipe with customers behind it in the demo network"
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, asset_id,"
            " geom) SELECT 'wp-main-1', 'water', 'water_pressure', '天府广场干管压力', 510104,"
            " pipe_id, ST_LineInterpolatePoint(geom, 0.5) FROM water_pipes WHERE pipe_id = %s",
            (pipe,),
        )
        alert_id = conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wp-main-1', 'water', 'pressure',"
            " 'burst', 'critical', now(), 90, 200, '疑似爆管：压力骤降至 90 kPa',"
            " 'Suspected burst: pressure down to 90 kPa') RETURNING alert_id"
        ).fetchone()[0]
        incident = conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " explanation_zh, explanation_en) SELECT 'water', 'burst', 'critical', now(), now(),"
            " geom, '干管压力骤降，疑似爆管', 'Sudden pressure drop on a main: suspected burst'"
            " FROM sensors WHERE sensor_id = 'wp-main-1' RETURNING incident_id"
        ).fetchone()[0]
        conn.execute("UPDATE alerts SET incident_id = %s WHERE alert_id = %s", (incident, alert_id))
    open_page(browser, dash_server.url + "/alerts")
    wait_for(
        lambda: browser.find_element(By.XPATH, f"//button[text()='#{alert_id}']"), what="alert"
    ).click()
    impact = wait_for(lambda: browser.find_element(By.ID, "alerts-impact").text, what="impact view")
    assert f"停供用户 {iso['customers_without_supply']} 户" in impact
    assert "疑似爆管" in browser.find_element(By.ID, "alerts-explanation").text
    assert f"约 {iso['population_without_supply']} 人" in impact
    assert all(v in impact for v in iso["valves_to_close"])
    legend = wait_for(lambda: texts(browser, "#alerts-map .legendtext"), what="incident map")
    assert "需关闭阀门" in legend and "告警传感器" in legend, legend
    assert "Traceback" not in page_text(browser)
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "alerts-incident.png"))
