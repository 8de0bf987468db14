"""The metered areas' learnt water balance survives a restart, on the real database: stored with
the engine's batches (alert_balance_state, migration 0070), reloaded at start, so a restarted
engine neither relearns (it judges the first point after the restart) nor raises a false
alert; a grown leak is recorded on its open alert, audited, with an ``escalated`` event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import psycopg
import pytest

from alerts.balance import AreaState
from alerts.engine import AlertChange, Engine, KeyState, restored_states, wanted_history
from alerts.stores import alert_rows, balance_state, catalogue, detector_state
from alerts.stores.batch import write_evaluation
from alerts.stores.times import ts_from_us
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from sensors.payload import Reading, encode_reading
from sensors.topics import telemetry_topic
from tests.alerts.conftest import EngineProcess, add_sensors
from tests.alerts.test_balance import MIN, T0, usual
from tests.waiting import wait_for

DAY = 1440  # [min]
METERS = [("in-a", 1), ("in-b", 1), ("out-c", -1)]
AREA_KINDS = {"water_burst", "night_flow_rise", "night_flow_step", "inlet_flow_low"}


def setup(db_url: str) -> None:
    add_sensors(db_url, [(sid, "water", "water_flow") for sid, _ in METERS])
    with psycopg.connect(db_url) as conn:
        catalogue.write_metered_area(conn, "test", "dma-1", "test DMA", METERS)


def start_engine(conn: psycopg.Connection, *, reload_balance: bool = True) -> Engine:
    """An engine as the service builds it at start (alerts/service.py ``_reload``)."""
    sensors = catalogue.read_sensors(conn)
    last = detector_state.read_last_evaluated(conn)
    active = alert_rows.read_active_kinds(conn)
    history = detector_state.read_recent_readings(conn, wanted_history(sensors))
    learnt = balance_state.read_balance_states(conn) if reload_balance else None
    return Engine(
        sensors,
        restored_states(sensors, last, active, history),
        catalogue.read_metered_areas(conn),
        learnt,
    )


def drive(
    conn: psycopg.Connection | None,
    eng: Engine,
    minutes: range,
    extra: Callable[[int], float],
) -> list[AlertChange]:
    """5-minute points through the engine, each batch stored; the area state with it as the
    service keeps it: with a batch that changes an area alert, on a timer (here hourly) and at
    stop (the last batch). ``conn`` None: in memory."""
    out = []
    last = minutes[-1]
    for m in minutes:
        t = T0 + m * MIN
        a, b, c = usual(t)
        noise = np.random.default_rng([11, m]).normal(0, 0.005, 3).tolist()
        a = (a + extra(m)) * (1 + noise[0])
        ev = eng.evaluate(
            [
                Reading("in-a", "flow", t, a, None),
                Reading("in-b", "flow", t, b * (1 + noise[1]), None),
                Reading("out-c", "flow", t, c * (1 + noise[2]), None),
            ]
        )
        if conn is not None:
            save = any(c.kind in AREA_KINDS for c in ev.changes) or m % 60 == 0 or m == last
            areas: dict[str, AreaState] = {**eng.area_states, **ev.areas}
            write_evaluation(conn, ev, group=False, areas=areas if save else None)
        eng.commit(ev)
        out += [c for c in ev.changes if c.kind in AREA_KINDS]
    return out


def leaks(m: int) -> float:
    """6 L/s from day 2 06:00, 6 L/s more from day 4 06:00."""
    return (6.0 if m >= DAY + 360 else 0.0) + (6.0 if m >= 3 * DAY + 360 else 0.0)


def key(c: AlertChange) -> tuple[str, str, str, int, float]:
    return (c.event, c.kind, c.sensor_id, c.ts_us, round(c.value, 6))


def test_a_restart_neither_relearns_nor_raises_a_false_alert(db_url: str) -> None:
    setup(db_url)
    restart_at = 3 * DAY + 720  # day 4, noon: one leak open, the second 6 h old
    with psycopg.connect(db_url, autocommit=True) as conn:
        straight = drive(None, start_engine(conn), range(0, 6 * DAY, 5), leaks)
        before = drive(conn, start_engine(conn), range(0, restart_at, 5), leaks)
        row = conn.execute("SELECT count(*), max(stream_ts) FROM alert_balance_state").fetchone()
        assert row is not None and row[0] == 1 and row[1] is not None

        restarted = start_engine(conn)
        assert restarted.area_states["dma-1"].days  # the profile came back ...
        after = drive(conn, restarted, range(restart_at, 6 * DAY, 5), leaks)
        # ... and the run goes on exactly as without a restart: the second leak is found at its
        # first night, nothing is raised twice, nothing false
        assert [key(c) for c in before + after] == [key(c) for c in straight]
        assert [(c.event, c.kind) for c in after] == [("raised", "night_flow_step")]

        # without the stored state the same restart would have had to learn again (min_days)
        # and would have missed the step
        blind = start_engine(conn, reload_balance=False)
        assert blind.area_states == {}
        assert drive(None, blind, range(restart_at, 6 * DAY, 5), leaks) == []

        active = conn.execute(
            "SELECT kind FROM alerts WHERE cleared_at IS NULL AND kind = ANY(%s) ORDER BY kind",
            (sorted(AREA_KINDS),),
        ).fetchall()
        assert active == [("night_flow_rise",), ("night_flow_step",)]


def test_a_quiet_restart_raises_nothing(db_url: str) -> None:
    setup(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert drive(conn, start_engine(conn), range(0, 2 * DAY, 5), lambda _m: 0.0) == []
        assert drive(conn, start_engine(conn), range(2 * DAY, 4 * DAY, 5), lambda _m: 0.0) == []


def test_a_grown_leak_is_recorded_on_its_alert_audited_and_escalated(db_url: str) -> None:
    setup(db_url)

    def growing(m: int) -> float:
        return 0.0 if m < DAY + 360 else 6.0 + 1.8 * max(0.0, (m - 3 * DAY) / DAY)

    with psycopg.connect(db_url, autocommit=True) as conn:
        changes = drive(conn, start_engine(conn), range(0, 8 * DAY, 5), growing)
        grown = [c for c in changes if c.event == "grown"]
        assert grown and grown[0].severity == "critical"
        (alert_id, level) = conn.execute(
            "SELECT alert_id, escalation_level FROM alerts"
            " WHERE kind = 'night_flow_rise' AND cleared_at IS NULL"
        ).fetchone() or (None, None)
        assert alert_id is not None and level == len(grown)
        audit = conn.execute(
            "SELECT comment, detail->>'message_en' FROM alert_audit"
            " WHERE alert_id = %s AND action = 'escalate' ORDER BY audit_id",
            (alert_id,),
        ).fetchall()
        assert len(audit) == len(grown)
        assert "升至" in audit[0][0] and "rose from" in audit[0][1]
        events = conn.execute(
            "SELECT payload->>'severity', (payload->>'level')::int FROM alert_events"
            " WHERE alert_id = %s AND event = 'escalated' ORDER BY event_id",
            (alert_id,),
        ).fetchall()
        assert events == [("critical", i + 1) for i in range(len(grown))]
        # the alert row says what the pager said: critical, with the grown excess
        row = conn.execute(
            "SELECT severity, last_value FROM alerts WHERE alert_id = %s", (alert_id,)
        ).fetchone()
        assert row == ("critical", pytest.approx(grown[-1].value))


def test_a_key_keeps_its_learnt_rhythm_across_a_restart(db_url: str) -> None:
    """A gateway uploading every 15 min: after a restart its keys are judged by that rhythm,
    not their type's 60 s (which would call them silent at once)."""
    setup(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        sensors = catalogue.read_sensors(conn)
        states = {
            ("in-a", "flow"): KeyState(T0, frozenset(), 900e6, T0),
            ("in-b", "flow"): KeyState(T0, frozenset(), None, None),
        }
        with conn.transaction():
            detector_state.write_last_evaluated(conn, states)
        # a later batch that knows no rhythm (yet) keeps the stored one
        with conn.transaction():
            detector_state.write_last_evaluated(
                conn, {("in-a", "flow"): KeyState(T0 + MIN, frozenset(), None, None)}
            )
        intervals = detector_state.read_intervals(conn)
        assert intervals == {("in-a", "flow"): 900e6}
        last = detector_state.read_last_evaluated(conn)
        restored = restored_states(sensors, last, {}, {}, intervals)
        assert restored[("in-a", "flow")].interval_us == 900e6
        assert restored[("in-b", "flow")].interval_us == sensors["in-b"].expected_interval_s * 1e6


def test_the_service_keeps_the_balance_and_judges_at_once_after_a_restart(
    settings: Settings, db_url: str, engine: EngineProcess
) -> None:
    """`cityops alerts` itself: two quiet days through the broker, a clean stop (the state is
    written), a start (it is read), and a burst on the third night is raised within its two
    points: no day of relearning, and nothing else."""
    setup(db_url)
    settings.accept_past_s = 10 * 365 * 86_400.0  # T0 lies in the past
    engine.settings = settings

    def publish(pub: Publisher, minutes: range, extra: Callable[[int], float]) -> None:
        for m in minutes:
            t = T0 + m * MIN
            a, b, c = usual(t)
            for sid, v in (("in-a", a + extra(m)), ("in-b", b), ("out-c", c)):
                pub.publish(
                    telemetry_topic("water", sid), encode_reading(t // 1000, None, {"flow": v})
                )
        pub.flush()

    def evaluated() -> datetime | None:
        with psycopg.connect(db_url) as conn:
            return detector_state.read_evaluated_until(conn, [sid for sid, _ in METERS])

    def area_alerts() -> list[tuple[str, str]]:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT kind, sensor_id FROM alerts WHERE kind = ANY(%s) ORDER BY alert_id",
                (sorted(AREA_KINDS),),
            ).fetchall()
        return [(k, s) for k, s in rows]

    burst_at = 2 * DAY + 120  # day 3, 02:00
    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        publish(pub, range(0, burst_at, 5), lambda _m: 0.0)
        last = ts_from_us(T0 + (burst_at - 5) * MIN)
        wait_for(lambda: (evaluated() or last - timedelta(1)) >= last, 120, interval_s=0.5)
        assert engine.stop() == 0
        with psycopg.connect(db_url) as conn:
            kept = balance_state.read_balance_states(conn)
        assert set(kept) == {"dma-1"} and len(kept["dma-1"].days) >= 2

        engine.start()
        publish(pub, range(burst_at, burst_at + 30, 5), lambda m: 80.0)
        wait_for(area_alerts, 60, interval_s=0.5, what="the burst alert")
    assert engine.stop() == 0
    assert area_alerts() == [("water_burst", "in-a")]
