"""`cityops alerts list` and `cityops incidents list` through the CLI, on the real database."""

from __future__ import annotations

import json

import psycopg
import pytest

from cityops.kernel.settings import Settings
from tests.conftest import run_cityops


@pytest.fixture
def events(settings: Settings) -> Settings:
    """Two incidents (water open, power resolved) and three alerts, one of them three days old."""
    with psycopg.connect(settings.database_url) as conn:
        inc = conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " likely_location, explanation_zh, explanation_en, affected) VALUES ('water', 'burst',"
            " 'critical', now() - interval '10 minutes', now(),"
            " ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326), 'P-12', '疑似爆管', 'Suspected burst',"
            " %s::jsonb) RETURNING incident_id",
            (
                json.dumps(
                    {"method": "network-model", "candidates": [{"pipe": "P-12"}, {"pipe": "P-13"}]}
                ),
            ),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO incidents (utility, kind, severity, state, opened_at, last_alert_at,"
            " resolved_at, centre, explanation_zh, explanation_en) VALUES ('power', 'voltage_low',"
            " 'major', 'resolved', now() - interval '2 days', now() - interval '2 days', now(),"
            " ST_SetSRID(ST_MakePoint(104.1, 30.6), 4326), '母线电压过低', 'Bus voltage low')"
        )
        rows = [
            (
                "wp-1",
                "water",
                "pressure",
                "low",
                "critical",
                "0 minutes",
                150.0,
                200.0,
                inc,
                "open",
            ),
            (
                "wf-1",
                "water",
                "flow",
                "high",
                "major",
                "5 minutes",
                450.0,
                400.0,
                inc,
                "acknowledged",
            ),
            ("pb-1", "power", "voltage", "low", "major", "3 days", 8800.0, 9300.0, None, "closed"),
        ]
        for sid, u, q, k, sev, ago, v, lim, i, st in rows:
            conn.execute(
                "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at,"
                " value, limit_value, incident_id, state, message_zh, message_en) VALUES"
                " (%s, %s, %s, %s, %s, now() - %s::interval, %s, %s, %s, %s, %s, %s)",
                (sid, u, q, k, sev, ago, v, lim, i, st, f"{sid} 告警", f"{sid} alert"),
            )
    return settings


def _json(settings: Settings, *args: str) -> list[dict]:
    r = run_cityops(settings, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_alerts_list_filters_and_json(events: Settings) -> None:
    every = _json(events, "alerts", "list")
    assert [a["sensor_id"] for a in every] == ["wp-1", "wf-1", "pb-1"]  # newest first
    assert every[0]["value"] == 150.0 and every[0]["limit_value"] == 200.0
    assert [a["sensor_id"] for a in _json(events, "alerts", "list", "--state", "active")] == [
        "wp-1",
        "wf-1",
    ]
    assert [a["sensor_id"] for a in _json(events, "alerts", "list", "--utility", "power")] == [
        "pb-1"
    ]
    assert [a["sensor_id"] for a in _json(events, "alerts", "list", "--since", "1d")] == [
        "wp-1",
        "wf-1",
    ]
    assert [a["sensor_id"] for a in _json(events, "alerts", "list", "--limit", "1")] == ["wp-1"]


def test_incidents_list_filters_and_json(events: Settings) -> None:
    every = _json(events, "incidents", "list")
    assert [(i["utility"], i["state"]) for i in every] == [("water", "open"), ("power", "resolved")]
    assert every[0]["likely_location"] == "P-12"
    # how it was placed and where else to look, in the order a crew searches
    assert every[0]["method"] == "network-model"
    assert every[0]["candidates"] == ["P-12", "P-13"]
    assert every[1]["candidates"] is None
    assert every[0]["lon"] == pytest.approx(104.06)
    opened = _json(events, "incidents", "list", "--state", "open", "--utility", "water")
    assert [i["kind"] for i in opened] == ["burst"]


def test_the_table_is_in_chinese_by_default_and_english_on_request(events: Settings) -> None:
    r = run_cityops(events, "incidents", "list")
    assert r.returncode == 0, r.stderr
    assert "疑似爆管" in r.stdout and "可能位置" in r.stdout
    r = run_cityops(events, "incidents", "list", "--lang", "en")
    assert "Suspected burst" in r.stdout and "likely location" in r.stdout
    r = run_cityops(events, "alerts", "list", "--state", "closed", "--lang", "en")
    assert "pb-1 alert" in r.stdout and "wp-1" not in r.stdout


def test_bad_filters_are_refused_with_a_clear_error(events: Settings) -> None:
    r = run_cityops(events, "alerts", "list", "--state", "pending")
    assert r.returncode == 2 and "state must be one of" in r.stderr
    r = run_cityops(events, "incidents", "list", "--since", "yesterday")
    assert r.returncode == 2 and "--since" in r.stderr
    r = run_cityops(events, "alerts", "list", "--utility", "steam", "--lang", "en")
    assert r.returncode == 2 and "utility must be one of" in r.stderr


def test_source_losses_are_listed_as_incidents_with_the_usual_filters(events: Settings) -> None:
    """An open loss of the water stream and a closed loss of the whole stream, listed among the
    incidents as kind source_loss (id SL<n> in the table): what stopped, since when, how many
    sensors; no alerts, no place, no customers. `--utility` lists a loss holding sensors of
    that utility, `--state resolved` the closed one; the JSON keeps every incident field."""
    with psycopg.connect(events.database_url) as conn:
        for sid, utility in [("sl-w1", "water"), ("sl-w2", "water"), ("sl-p1", "power")]:
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
                " (%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (
                    sid,
                    utility,
                    "water_pressure" if utility == "water" else "power_bus",
                    sid,
                ),
            )
        water = conn.execute(
            "INSERT INTO source_losses (scope, scope_value, sensors, group_size, since,"
            " noticed_at, explanation_zh, explanation_en) VALUES ('utility', 'water',"
            " '{sl-w1,sl-w2}', 2, now() - interval '5 minutes', now() - interval '4 minutes',"
            " '数据源中断', 'source lost') RETURNING loss_id"
        ).fetchone()[0]
        stream = conn.execute(
            "INSERT INTO source_losses (scope, sensors, group_size, since, noticed_at, ended_at,"
            " state, explanation_zh, explanation_en) VALUES ('stream', '{sl-w1,sl-w2,sl-p1}', 3,"
            " '2026-12-01 02:00+00', '2026-12-01 02:01+00', '2026-12-01 02:30+00', 'closed',"
            " '数据源中断', 'source lost') RETURNING loss_id"
        ).fetchone()[0]
    every = _json(events, "incidents", "list")
    assert [(i["kind"], i["incident_id"] is None) for i in every] == [
        ("source_loss", True),  # opened (stopped) 5 minutes ago
        ("burst", False),
        ("voltage_low", False),
        ("source_loss", True),  # 2026-12-01
    ]
    lost = every[0]
    assert (lost["source_loss_id"], lost["state"], lost["utility"], lost["severity"]) == (
        water,
        "open",
        "water",
        "critical",
    )
    assert (lost["scope"], lost["scope_value"], lost["sensors"], lost["group_size"]) == (
        "utility",
        "water",
        2,
        2,
    )
    assert (lost["alert_count"], lost["kinds"], lost["lon"], lost["radius_m"]) == (
        0,
        [],
        None,
        None,
    )
    assert set(every[1]) == set(lost)  # one schema: the incidents' fields and the loss's
    assert every[1]["source_loss_id"] is None and every[1]["scope"] is None
    closed = every[3]
    assert (closed["source_loss_id"], closed["state"], closed["utility"]) == (
        stream,
        "resolved",
        None,
    )
    assert closed["since"].startswith("2026-12-01T02:00:00")
    assert "自 2026-12-01 10:00:00 起无数据（3 个传感器中 3 个）" in closed["explanation_zh"]
    assert "since 2026-12-01 10:00:00 (3 of 3 sensors)" in closed["explanation_en"]
    power = _json(events, "incidents", "list", "--utility", "power")
    assert [(i["kind"], i["source_loss_id"]) for i in power] == [
        ("voltage_low", None),
        ("source_loss", stream),
    ]
    resolved = _json(events, "incidents", "list", "--state", "resolved")
    assert [i["source_loss_id"] for i in resolved] == [None, stream]
    assert [i["source_loss_id"] for i in _json(events, "incidents", "list", "--since", "1d")] == [
        water,
        None,
    ]
    r = run_cityops(events, "incidents", "list", "--state", "open")
    assert r.returncode == 0, r.stderr
    assert f"SL{water}" in r.stdout and "utility water 2/2" in r.stdout and "数据源中断" in r.stdout
