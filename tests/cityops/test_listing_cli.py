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
