"""Source loss (alerts/source_loss.py, decision 0076): a bank of sensors that stops together is
one loss of data, not a silent alert per sensor; its gap and the backlog after it raise
nothing; it closes by itself when the data is back. The rule on the engine (pure), then the
engine as a process on the real broker and database."""

from __future__ import annotations

import time

import psycopg

from alerts.detectors import build_stream_config
from alerts.engine import Engine, SensorInfo
from alerts.source_loss import SensorClock, SourceLossRule, step_losses
from cityops.kernel.clock import wait_until
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from dashboards.queries import fetch_source_losses
from sensors.catalogue import SENSOR_TYPES
from sensors.payload import Reading, encode_reading
from sensors.topics import telemetry_topic
from tests.alerts.conftest import MIN, T0, EngineProcess

S = 1_000_000
LIMITS = {q.quantity: q for q in SENSOR_TYPES["water_pressure"].limits}
STREAMS = {
    "pressure": build_stream_config(
        "pressure", {"silent": ("warning", {}), "rate_of_change": ("warning", {})}
    )
}


def _bank(n: int, *, district_of=lambda i: 510104 + i % 2) -> Engine:  # type: ignore[no-untyped-def]
    """``n`` water pressure sensors reporting every minute, in two districts."""
    sensors = {
        f"wp-{i}": SensorInfo(f"wp-{i}", "water", "water_pressure", LIMITS, 60.0, STREAMS)
        for i in range(n)
    }
    eng = Engine(sensors)
    eng.districts = {f"wp-{i}": district_of(i) for i in range(n)}
    return eng


def _minute(eng: Engine, m: int, ids: list[str], value: float = 350.0) -> list:  # type: ignore[type-arg]
    """One reading of each sensor in ``ids`` at minute ``m``, then the clock at that minute."""
    ev = eng.evaluate([Reading(sid, "pressure", T0 + m * MIN, value, None) for sid in ids])
    eng.commit(ev)
    clock = eng.check_clock(T0 + m * MIN)
    eng.commit(clock)
    return [*ev.changes, *clock.changes]


def _idle(eng: Engine, start_us: int, end_us: int, step_s: int = 10) -> list:  # type: ignore[type-arg]
    """The clock looked at every ``step_s`` with no reading; every change it made."""
    out = []
    for now in range(start_us, end_us + 1, step_s * S):
        ev = eng.check_clock(now)
        eng.commit(ev)
        out += ev.changes
    return out


def test_before_the_rule_a_paused_bank_is_one_silent_alert_per_sensor() -> None:
    """The issue, reproduced on the engine: with the rule off (a loss needs more sensors than
    there are), 20 sensors that stop together raise 20 silent alerts."""
    eng = _bank(20)
    eng.loss_rule = SourceLossRule(min_sensors=1000)
    ids = sorted(eng.sensors)
    for m in range(5):
        assert _minute(eng, m, ids) == []
    raised = _idle(eng, T0 + 4 * MIN, T0 + 10 * MIN)
    assert sorted(c.sensor_id for c in raised if c.kind == "silent") == ids


def test_a_bank_that_stops_together_is_one_source_loss_and_no_silent_alert() -> None:
    eng = _bank(20)
    ids = sorted(eng.sensors)
    for m in range(5):
        _minute(eng, m, ids)
    last = T0 + 4 * MIN
    assert _idle(eng, last, last + 2 * MIN) == []
    assert eng.losses == ()  # 2 min: not yet overdue (2 x 60 s)
    assert _idle(eng, last + 2 * MIN + 10 * S, last + 30 * MIN) == []  # not one alert
    (loss,) = eng.losses
    assert (loss.scope, loss.scope_value, loss.group_size) == ("stream", None, 20)
    assert loss.sensors == frozenset(ids) and loss.since_us == last
    # data back (live readings): the loss is back at once, and closes settle_s later by itself
    back = T0 + 40 * MIN
    assert _minute(eng, 40, ids) == []
    assert eng.losses[0].back_us == back
    _idle(eng, back, back + 50 * S)
    assert eng.losses and eng.losses[0].ended_us is None
    ev = eng.check_clock(back + 60 * S)
    eng.commit(ev)
    assert eng.losses == () and ev.losses is not None
    (closed,) = ev.losses.changed
    assert closed.ended_us == back + 60 * S
    # and the sensors are watched again as usual
    assert _minute(eng, 41, ids) == []


def test_the_backlog_after_a_loss_raises_no_burst() -> None:
    """The gap's readings replayed after it (a broker's queue) all at once: within the loss's
    settling nothing is raised (before: a threshold alert on every sensor in one burst), and a
    condition that lasts is raised at the first reading after the loss closed."""
    eng = _bank(10)
    eng.loss_rule = SourceLossRule(settle_s=120.0)
    ids = sorted(eng.sensors)
    for m in range(5):
        _minute(eng, m, ids, 350.0)
    _idle(eng, T0 + 4 * MIN, T0 + 8 * MIN)
    assert len(eng.losses) == 1
    # the backlog, minutes 5-7 at 100 kPa (below the 200 kPa limit), then live minute 8
    for m in (5, 6, 7):
        assert _minute(eng, m, ids, 100.0) == [], m
    assert eng.losses == ()  # closed 120 s after minute 5, at minute 7's look
    raised = _minute(eng, 8, ids, 100.0)
    assert {(c.sensor_id, c.kind) for c in raised if c.kind == "threshold_low"} == {
        (s, "threshold_low") for s in ids
    }
    assert not [c for c in raised if c.kind == "silent"]


def test_silent_alerts_raised_before_the_loss_was_seen_are_cleared_into_it() -> None:
    eng = _bank(8)
    ids = sorted(eng.sensors)
    eng.loss_rule = SourceLossRule(min_sensors=8, window_s=180.0)
    for m in range(6):
        _minute(eng, m, ids[:2] if m >= 4 else ids)  # six stop after minute 3, two after 5
    raised = _idle(eng, T0 + 5 * MIN, T0 + 6 * MIN + 30 * S)
    assert len(raised) == 6  # six silent at 3 x 60 s, before the last two are overdue
    assert eng.losses == ()
    cleared = _idle(eng, T0 + 6 * MIN + 40 * S, T0 + 8 * MIN)
    (loss,) = eng.losses
    assert loss.sensors == frozenset(ids)
    assert sorted((c.event, c.sensor_id) for c in cleared) == [
        ("cleared", sid) for sid in sorted(c.sensor_id for c in raised)
    ]


def _clock(sid: str, utility: str, district: int, last_s: float) -> SensorClock:
    return SensorClock(sid, utility, district, int(last_s * S), 60.0 * S)


def test_the_broadest_scope_that_qualifies_names_what_stopped() -> None:
    rule = SourceLossRule(min_sensors=3, min_share=0.6, window_s=60.0)
    now = 1000 * S
    fresh = [
        _clock(f"f{i}", u, 1 + i % 4, 990) for i, u in enumerate(["water", "gas", "power"] * 4)
    ]
    # one district's gateway: 4 of its 4 sensors stopped at about t = 700 s
    gateway = [_clock(f"d{i}", "power", 9, 700 + i) for i in range(4)]
    step = step_losses(fresh + gateway, (), rule, now)
    (loss,) = step.open
    assert (loss.scope, loss.scope_value, len(loss.sensors)) == ("district", "9", 4)
    # the power stream: every power sensor, in several districts
    fresh = [c for c in fresh if c.utility != "power"]
    power = [_clock(f"p{i}", "power", 1 + i % 3, 600 + i) for i in range(6)]
    (loss,) = step_losses(fresh + power, (), rule, now).open
    assert (loss.scope, loss.scope_value, loss.group_size) == ("utility", "power", 6)
    # everything: the stream
    (loss,) = step_losses(
        [_clock(c.sensor_id, c.utility, 1, 500) for c in fresh], (), rule, now
    ).open
    assert (loss.scope, loss.scope_value, len(loss.sensors)) == ("stream", None, 8)
    # a few sensors silent at different times are not a loss
    scattered = [_clock(f"s{i}", "water", 1 + i, 100 + 200 * i) for i in range(4)]
    assert step_losses(fresh + scattered, (), rule, now).open == ()


def test_an_open_loss_is_kept_for_a_restart_and_closed_in_place(db_url: str) -> None:
    """The store (alerts/stores/source_loss.py): a restarted engine gets its open losses back
    (so the gap raises no silent alert after a restart either); a loss that grows or closes is
    the same row; another worker's losses are its own."""
    from dataclasses import replace

    from alerts.source_loss import SourceLoss
    from alerts.stores.source_loss import read_open_losses, read_rule, write_losses

    loss = SourceLoss("utility", "power", frozenset({"pb-1", "pb-2"}), 4, T0, T0 + 2 * MIN)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert read_rule(conn) == SourceLossRule()  # the migration's row: the defaults
        write_losses(conn, [loss], "0/1")
        assert read_open_losses(conn, "0/1") == (loss,)
        assert read_open_losses(conn, "1/2") == ()
        grown = replace(loss, sensors=loss.sensors | {"pb-3"}, back_us=T0 + 5 * MIN)
        write_losses(conn, [grown], "0/1")
        assert read_open_losses(conn, "0/1") == (grown,)
        write_losses(conn, [replace(grown, ended_us=T0 + 6 * MIN)], "0/1")
        assert read_open_losses(conn, "0/1") == ()
        rows = conn.execute(
            "SELECT state, cardinality(sensors), explanation_en FROM source_losses"
        ).fetchall()
    assert rows == [("closed", 3, "source lost: no data from the power stream (3 of 4 sensors)")]


def register_fast_bank(db_url: str, n: int) -> list[str]:
    """``n`` water pressure sensors of a type reporting every second, in three districts, with
    the silent detector, and a source-loss rule quick enough for a test (window 2 s, settling
    3 s); returns their ids."""
    ids = [f"fast-{i}" for i in range(n)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensor_types (type_id, utility, name_zh, name_en, expected_interval_s)"
            " VALUES ('fast_pressure', 'water', '快速压力', 'fast pressure', 1)"
        )
        conn.execute(
            "INSERT INTO sensor_type_quantities (type_id, quantity, alarm_low, alarm_high,"
            " deadband) VALUES ('fast_pressure', 'pressure', 200, 800, 5)"
        )
        conn.execute(
            "INSERT INTO alert_detector_settings (type_id, quantity, detector, severity, params)"
            " VALUES ('fast_pressure', 'pressure', 'silent', 'warning', '{}')"
        )
        for i, sid in enumerate(ids):
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode,"
                " geom) VALUES (%s, 'water', 'fast_pressure', %s, %s,"
                " ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (sid, sid, 510104 + i % 3),
            )
        conn.execute("UPDATE source_loss_rule SET window_s = 2, settle_s = 3, min_sensors = 5")
    return ids


def publish_bank(pub: Publisher, ids: list[str], seconds: float) -> None:
    """Every sensor of the bank reports 350 kPa twice a second, live, for ``seconds``."""
    end = time.monotonic() + seconds
    seq = int(time.time())
    while time.monotonic() < end:
        now = time.time()
        for sid in ids:
            body = encode_reading(int(now * 1000), seq, {"pressure": 350.0})
            pub.publish(telemetry_topic("water", sid), body, qos=1)
        pub.flush(timeout_s=5.0)
        seq += 1
        time.sleep(0.5)


def test_the_engine_opens_and_closes_a_source_loss_on_the_real_stream(
    db_url: str, settings: Settings
) -> None:
    """The engine as a process: 12 sensors of a 1-second type publish, stop for 8 s, and
    publish again. One source loss is stored with its sensors and since when, no silent alert
    and no incident; it closes by itself once the data is back, and nothing is raised."""
    ids = register_fast_bank(db_url, 12)
    engine = EngineProcess(settings)
    engine.start(30.0)
    pub = Publisher(settings.mqtt_url, "test-source-loss-pub")
    pub.__enter__()

    def send(seconds: float) -> None:
        publish_bank(pub, ids, seconds)

    def rows(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        with psycopg.connect(db_url) as conn:
            return conn.execute(sql).fetchall()

    try:
        send(10.0)
        stopped = time.monotonic()
        assert wait_until(lambda: rows("SELECT 1 FROM source_losses WHERE state = 'open'"), 20.0), (
            engine.log()
        )
        noticed = time.monotonic() - stopped
        ((scope, members, size, state),) = rows(
            "SELECT scope, sensors, group_size, state FROM source_losses"
        )
        assert (scope, sorted(members), size, state) == ("stream", sorted(ids), 12, "open")
        with psycopg.connect(db_url) as conn:  # as the pages read it (dashboards/queries.py)
            (shown,) = fetch_source_losses(conn)
        assert (shown.scope, shown.sensors, shown.group_size, shown.back_at) == (
            "stream",
            12,
            12,
            None,
        )
        time.sleep(4.0)  # silent by now (3 s) if the loss did not hold it back
        assert rows("SELECT kind, sensor_id FROM alerts") == []
        send(8.0)
        assert wait_until(
            lambda: rows("SELECT 1 FROM source_losses WHERE state = 'closed'"), 20.0
        ), engine.log()
        ((back, ended),) = rows("SELECT back_at, ended_at FROM source_losses")
        assert back is not None and ended is not None and ended > back
        assert rows("SELECT kind, sensor_id FROM alerts") == []
        assert rows("SELECT incident_id FROM incidents") == []
        assert noticed < 6.0  # overdue at 2 s, checked every second
    finally:
        pub.__exit__(None, None, None)
        engine.stop()


def test_a_person_takes_a_source_loss_on_once(db_url: str) -> None:
    """``acknowledge_loss``: the first person is recorded; a second is told it is taken; a
    closed or unknown loss is said so; nobody is not a person."""
    import pytest

    from alerts.api import acknowledge_loss

    with psycopg.connect(db_url, autocommit=True) as conn:
        open_id, closed_id = (
            conn.execute(
                "INSERT INTO source_losses (scope, sensors, group_size, since, noticed_at, state,"
                " explanation_zh, explanation_en) VALUES ('stream', '{a,b,c,d,e}', 5,"
                " now() - interval '5 minutes', now(), %s, '测试', 'test') RETURNING loss_id",
                (state,),
            ).fetchone()[0]
            for state in ("open", "closed")
        )
        assert acknowledge_loss(conn, open_id, "zhang.wei") == "acknowledged"
        assert acknowledge_loss(conn, open_id, "wang.fang") == "already"
        assert acknowledge_loss(conn, closed_id, "wang.fang") == "closed"
        assert acknowledge_loss(conn, 999_999, "wang.fang") == "unknown"
        with pytest.raises(ValueError):
            acknowledge_loss(conn, open_id, " ")
        row = conn.execute(
            "SELECT acknowledged_by, acknowledged_at IS NOT NULL FROM source_losses"
            " WHERE loss_id = %s",
            (open_id,),
        ).fetchone()
    assert row == ("zhang.wei", True)
