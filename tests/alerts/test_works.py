"""The works calendar (migration 0075, alerts/stores/works.py): recorded and cancelled through
`cityops works` and the store, and what it does on the real path: an alert raised during an
active entry on its sensor is marked ``works:<id>`` by the batch writer and grouped as a
planned operation, apart from real events (real database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from alerts.engine import AlertChange, Evaluation
from alerts.incidents import (
    PLANNED_KIND,
    AlertPoint,
    Candidate,
    RaisedAlert,
    choose_for_alert,
    new_incident,
    settle,
)
from alerts.stores.alert_rows import write_maintenance_window
from alerts.stores.batch import write_evaluation
from alerts.stores.catalogue import write_metered_area
from alerts.stores.times import us_from_ts
from alerts.stores.works import add_work, cancel_work, covering, list_works
from cityops.kernel.settings import Settings
from cityops.shell.works_cli import register

T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _sensor(conn: psycopg.Connection, sid: str, lon: float, stype: str = "water_pressure") -> None:
    conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, geom)"
        " VALUES (%s, 'water', %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, 30.66), 4326))",
        (sid, stype, sid, f"j-{sid}", lon),
    )


def _network(conn: psycopg.Connection) -> None:
    """Two metered areas side by side (about 400 m apart: near enough to group by place)."""
    for sid, lon in (("wp-a1", 104.060), ("wp-a2", 104.061), ("wp-b1", 104.064)):
        _sensor(conn, sid, lon)
    for sid, lon in (("wf-a", 104.0605), ("wf-b", 104.0645)):
        _sensor(conn, sid, lon, "water_flow")
    write_metered_area(conn, "t", "area-a", "A", [("wf-a", 1)], members=["wp-a1", "wp-a2"])
    write_metered_area(conn, "t", "area-b", "B", [("wf-b", 1)], members=["wp-b1"])


def _low(sid: str, at: datetime, value: float = 150.0) -> AlertChange:
    return AlertChange(
        "raised",
        sid,
        "water",
        "pressure",
        "threshold_low",
        "major",
        value,
        200.0,
        us_from_ts(at),
        "压力低",
        "pressure low",
    )


def _rows(conn: psycopg.Connection) -> dict[str, tuple[str | None, str | None]]:
    """sensor -> (suppressed_by, its incident's kind)."""
    return {
        sid: (mark, kind)
        for sid, mark, kind in conn.execute(
            "SELECT a.sensor_id, a.suppressed_by, i.kind FROM alerts a"
            " LEFT JOIN incidents i USING (incident_id)"
        )
    }


def test_add_list_cancel_and_bad_input(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _network(conn)
        wid = add_work(
            conn,
            kind="valve_operation",
            utility="water",
            starts_at=T,
            ends_at=T + timedelta(hours=2),
            description="关闭 V-189 更换阀门",
            recorded_by="op1",
            area_ids=["area-a"],
            asset_ids=["V-189"],
        )
        bad = dict(utility="water", starts_at=T, description="x", recorded_by="op1")
        with pytest.raises(ValueError, match="kind"):
            add_work(conn, kind="burst", ends_at=T + timedelta(hours=1), **bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="after"):
            add_work(conn, kind="maintenance", ends_at=T, **bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown metered area: nowhere"):
            add_work(
                conn,
                kind="maintenance",
                ends_at=T + timedelta(hours=1),
                area_ids=["area-a", "nowhere"],
                **bad,  # type: ignore[arg-type]
            )
        with pytest.raises(ValueError, match="unknown sensor: wp-zz"):
            add_work(
                conn,
                kind="maintenance",
                ends_at=T + timedelta(hours=1),
                sensor_ids=["wp-zz"],
                **bad,  # type: ignore[arg-type]
            )
        with pytest.raises(ValueError, match="recorded"):
            add_work(
                conn,
                kind="maintenance",
                utility="water",
                starts_at=T,
                ends_at=T + timedelta(hours=1),
                description="x",
                recorded_by=" ",
            )
        # nothing half-way: only the good entry is there
        (w,) = list_works(conn)
        assert (w.work_id, w.kind, w.area_ids, w.asset_ids) == (
            wid,
            "valve_operation",
            ("area-a",),
            ("V-189",),
        )
        assert [x.work_id for x in list_works(conn, active_at=T + timedelta(hours=1))] == [wid]
        assert list_works(conn, active_at=T + timedelta(hours=2)) == []
        cancelled = cancel_work(conn, wid, "op2")
        assert cancelled.cancelled_by == "op2" and cancelled.cancelled_at is not None
        assert list_works(conn) == []
        assert [x.work_id for x in list_works(conn, include_cancelled=True)] == [wid]
        with pytest.raises(ValueError, match="already"):
            cancel_work(conn, wid, "op2")
        with pytest.raises(LookupError):
            cancel_work(conn, wid + 100, "op2")


def test_covering_by_area_asset_sensor_and_utility(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _network(conn)
        common = dict(kind="maintenance", utility="water", recorded_by="op1")
        by_area = add_work(
            conn,
            starts_at=T,
            ends_at=T + timedelta(hours=1),
            area_ids=["area-a"],
            description="a",
            **common,  # type: ignore[arg-type]
        )
        by_asset = add_work(
            conn,
            starts_at=T + timedelta(hours=2),
            ends_at=T + timedelta(hours=3),
            asset_ids=["j-wp-b1"],
            description="b",
            **common,  # type: ignore[arg-type]
        )
        by_sensor = add_work(
            conn,
            starts_at=T + timedelta(hours=4),
            ends_at=T + timedelta(hours=5),
            sensor_ids=["wp-a2"],
            description="c",
            **common,  # type: ignore[arg-type]
        )
        everywhere = add_work(
            conn,
            starts_at=T + timedelta(hours=6),
            ends_at=T + timedelta(hours=7),
            description="d",
            **common,  # type: ignore[arg-type]
        )
        m = timedelta(minutes=30)
        items = [
            (1, "wp-a1", "water", T + m),
            (2, "wp-b1", "water", T + m),  # other area
            (3, "wp-b1", "water", T + timedelta(hours=2) + m),
            (4, "wp-a1", "water", T + timedelta(hours=2) + m),
            (5, "wp-a2", "water", T + timedelta(hours=4) + m),
            (6, "wp-a1", "water", T + timedelta(hours=4) + m),
            (7, "wp-b1", "water", T + timedelta(hours=6) + m),
            (8, "wp-b1", "gas", T + timedelta(hours=6) + m),  # other utility
            (9, "wp-a1", "water", T + timedelta(hours=1)),  # at the end: over
        ]
        assert covering(conn, items) == {1: by_area, 3: by_asset, 5: by_sensor, 7: everywhere}


def test_alerts_during_works_are_marked_and_grouped_as_planned(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _network(conn)
        wid = add_work(
            conn,
            kind="valve_operation",
            utility="water",
            starts_at=T,
            ends_at=T + timedelta(hours=1),
            description="关闭阀门 V-189",
            recorded_by="op1",
            area_ids=["area-a"],
        )
        at = T + timedelta(minutes=5)
        # the works' pressure drops in area A, and at the same time a real one in area B
        write_evaluation(
            conn, Evaluation((_low("wp-a1", at), _low("wp-a2", at), _low("wp-b1", at)), {})
        )
        rows = _rows(conn)
        assert rows["wp-a1"] == (f"works:{wid}", PLANNED_KIND)
        assert rows["wp-a2"] == (f"works:{wid}", PLANNED_KIND)
        assert rows["wp-b1"][0] is None and rows["wp-b1"][1] != PLANNED_KIND
        incidents = conn.execute(
            "SELECT kind, alert_count, explanation_zh FROM incidents ORDER BY incident_id"
        ).fetchall()
        assert [(k, n) for k, n, _ in incidents] == [(PLANNED_KIND, 2), ("water_anomaly", 1)]
        assert incidents[0][2].startswith("计划作业")
        # a cancelled entry covers nothing: a later drop in area A is a real event again
        cancel_work(conn, wid, "op1")
        write_evaluation(
            conn,
            Evaluation(
                (
                    AlertChange(
                        "cleared",
                        "wp-a1",
                        "water",
                        "pressure",
                        "threshold_low",
                        "major",
                        300.0,
                        200.0,
                        us_from_ts(at + timedelta(minutes=1)),
                        "",
                        "",
                    ),
                ),
                {},
            ),
        )
        write_evaluation(conn, Evaluation((_low("wp-a1", at + timedelta(minutes=10)),), {}))
        (mark,) = conn.execute(
            "SELECT suppressed_by FROM alerts WHERE sensor_id = 'wp-a1' AND cleared_at IS NULL"
        ).fetchone()  # type: ignore[misc]
        assert mark is None


def test_maintenance_window_wins_over_works(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _network(conn)
        add_work(
            conn,
            kind="reconfiguration",
            utility="water",
            starts_at=T,
            ends_at=T + timedelta(hours=1),
            description="x",
            recorded_by="op1",
        )
        win = write_maintenance_window(
            conn, "op1", T, T + timedelta(hours=1), "calibration", sensor_id="wp-b1"
        )
        at = T + timedelta(minutes=5)
        write_evaluation(conn, Evaluation((_low("wp-a1", at), _low("wp-b1", at)), {}))
        marks = {sid: m for sid, (m, _) in _rows(conn).items()}
        assert marks["wp-b1"] == f"maintenance:{win}"
        assert marks["wp-a1"] is not None and marks["wp-a1"].startswith("works:")


def test_planned_rules_pure() -> None:
    def point(i: int, kind: str = "threshold_low") -> AlertPoint:
        return AlertPoint(i, "water", f"pressure:{kind}", "major", 0, 104.06, 30.66)

    planned = RaisedAlert(point(1), "s1", "threshold_low", planned="works:3")
    real = RaisedAlert(point(2), "s2", "threshold_low")
    p_inc = settle(planned, None)
    assert p_inc.kind == PLANNED_KIND
    r_inc = settle(real, None)
    assert r_inc.kind == "water_anomaly"
    cands = [
        Candidate(new_incident(point(1), 10), PLANNED_KIND, False, False, True),
        Candidate(new_incident(point(2), 20), "water_burst", False, False, True),
    ]
    # each joins its own kind, however near the other is
    assert choose_for_alert(planned, cands) is cands[0]
    assert choose_for_alert(real, cands) is cands[1]
    assert choose_for_alert(real, cands[:1]) is None
    # a health alert during works is still the sensor's own problem
    stuck = RaisedAlert(point(3, "stuck"), "s3", "stuck", planned="works:3")
    assert not stuck.planned_process
    assert settle(stuck, None).kind == "sensor_health"


def test_cli_add_list_cancel(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in settings.as_environment().items():
        monkeypatch.setenv(k, v)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    with psycopg.connect(settings.database_url) as conn:
        _network(conn)
    res = runner.invoke(
        app,
        [
            "works",
            "add",
            "valve_operation",
            "--from",
            "2026-11-26T16:00",
            "--until",
            "90m",
            "--area",
            "area-a",
            "--asset",
            "V-189,V-190",
            "-d",
            "更换阀门",
            "--by",
            "op1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    added = json.loads(res.output)
    # a time without a zone is Chengdu's (UTC+8)
    assert datetime.fromisoformat(added["starts_at"]) == datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert datetime.fromisoformat(added["ends_at"]) == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert (added["area_ids"], added["asset_ids"]) == (["area-a"], ["V-189", "V-190"])
    wid = added["work_id"]
    # bad input: a clear error, exit 2, nothing stored
    res = runner.invoke(
        app,
        [
            "works",
            "add",
            "valve_operation",
            "--until",
            "1h",
            "--area",
            "nope",
            "-d",
            "x",
            "--by",
            "op1",
        ],
    )
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["works", "add", "maintenance", "-d", "x", "--by", "op1"])
    assert res.exit_code == 2 and "--until" in res.output
    res = runner.invoke(app, ["works", "list", "--json"])
    assert res.exit_code == 0
    assert [w["work_id"] for w in json.loads(res.output)] == [wid]
    res = runner.invoke(app, ["works", "list", "--lang", "zh"])
    assert res.exit_code == 0 and "更换阀门" in res.output and "计量分区" in res.output
    res = runner.invoke(app, ["works", "cancel", str(wid), "--by", "op2", "--lang", "en"])
    assert res.exit_code == 0 and f"works entry {wid} cancelled" in res.output
    res = runner.invoke(app, ["works", "cancel", str(wid), "--by", "op2"])
    assert res.exit_code == 2 and "already" in res.output
    res = runner.invoke(app, ["works", "list", "--lang", "en"])
    assert res.exit_code == 0 and "no works entries" in res.output
