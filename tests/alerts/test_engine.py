"""The alert engine through the real broker and database, as `python -m cityops alerts`."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from alerts.engine import in_partition
from alerts.events import decode_alert_event
from alerts.notify import FLOOD_MAX, SM2_SIGNATURE_HEADER, Route
from alerts.service import AlertService
from alerts.stores.notifications import write_route
from cityops.kernel.crypto import generate_keys, load_keyring, verify_signature_header
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from cityops.shell.stack import free_port
from sensors.payload import encode_reading
from sensors.topics import alert_topic, telemetry_topic
from tests.alerts.conftest import (
    EngineProcess,
    HttpSink,
    add_sensors,
    thresholds_only,
)
from tests.conftest import run_cityops
from tests.listening import Recorder
from tests.waiting import wait_for


def evaluated_until(db_url: str, sensor_id: str, quantity: str) -> int | None:
    """The newest reading time [ms] the engine committed for one sensor and quantity."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (extract(epoch FROM last_ts) * 1000)::bigint FROM alert_detector_state"
            " WHERE sensor_id = %s AND quantity = %s",
            (sensor_id, quantity),
        ).fetchone()
    return row[0] if row else None


def publish_until_evaluated(
    pub: Publisher, db_url: str, sensor_id: str, ts_ms: int, value: float
) -> int:
    """Readiness probe: publish an in-range reading every 0.5 s until the engine has committed
    the last one (the engine's subscription may reach the broker a moment after its CONNACK);
    returns its time [ms]."""
    probes = itertools.count(ts_ms)
    sent: list[int] = []

    def probe() -> int | None:
        if sent and (evaluated_until(db_url, sensor_id, "pressure") or 0) >= sent[-1]:
            return sent[-1]
        sent.append(next(probes))
        reading = encode_reading(sent[-1], None, {"pressure": value})
        pub.publish(telemetry_topic("water", sensor_id), reading)
        pub.flush()
        return None

    return wait_for(probe, 20, interval_s=0.5, what="the engine to evaluate a probe reading")


def test_raise_restart_clear_once(
    settings: Settings, db_url: str, engine: EngineProcess, alert_subscriber: Recorder
) -> None:
    add_sensors(db_url, [("wp-eng-1", "water", "water_pressure")])
    topic = telemetry_topic("water", "wp-eng-1")
    t0 = (time.time_ns() // 1_000_000) - 600_000  # ten minutes ago, one reading a minute
    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        t0 = publish_until_evaluated(pub, db_url, "wp-eng-1", t0, 300.0)

        sent = time.monotonic()
        pub.publish(topic, encode_reading(t0 + 60_000, 1, {"pressure": 150.0}))
        pub.flush()
        got_topic, payload, received = alert_subscriber.get(timeout=10)
        latency_ms = (received - sent) * 1000
        raised = decode_alert_event(payload)
        print(f"alert latency (published reading -> alert event received): {latency_ms:.1f} ms")

        assert engine.stop() == 0  # SIGTERM: a clean stop
        assert "alerts engine stopped" in engine.log()
        # while the engine is down: the condition persists, and the raising reading is replayed
        pub.publish(topic, encode_reading(t0 + 60_000, 1, {"pressure": 150.0}))
        pub.publish(topic, encode_reading(t0 + 120_000, 2, {"pressure": 140.0}))
        pub.flush()
        engine.start()
        # inside the range but within the deadband (200 + 10 kPa): still active
        pub.publish(topic, encode_reading(t0 + 180_000, 3, {"pressure": 205.0}))
        pub.publish(topic, encode_reading(t0 + 240_000, 4, {"pressure": 215.0}))
        pub.flush()
        _, payload2, _ = alert_subscriber.get(timeout=10)
        cleared = decode_alert_event(payload2)
        # the restarted engine evaluated everything after the clear and published nothing more
        pub.publish(topic, encode_reading(t0 + 300_000, 5, {"pressure": 300.0}))
        pub.flush()
        wait_for(lambda: evaluated_until(db_url, "wp-eng-1", "pressure") == t0 + 300_000)
    assert alert_subscriber.messages.empty()
    assert engine.stop() == 0

    assert got_topic == alert_topic("water", "wp-eng-1")
    assert (raised.event, raised.kind, raised.severity) == ("raised", "threshold_low", "major")
    assert (raised.value, raised.limit, raised.unit) == (150.0, 200.0, "kPa")
    assert (raised.sensor_id, raised.utility, raised.quantity) == ("wp-eng-1", "water", "pressure")
    assert raised.messages.zh == "wp-eng-1 压力 150 kPa，低于下限 200 kPa"
    assert raised.ts.endswith("Z") and raised.ts.startswith(time.strftime("%Y-"))
    assert (cleared.alert_id, cleared.event, cleared.value) == (raised.alert_id, "cleared", 215.0)
    assert "已恢复" in cleared.messages.zh

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT alert_id, kind, severity, state, value, limit_value, last_value,"
            " (extract(epoch FROM raised_at) * 1000)::bigint,"
            " (extract(epoch FROM cleared_at) * 1000)::bigint, message_en FROM alerts"
        ).fetchall()
        events = conn.execute(
            "SELECT event, payload, published_at IS NOT NULL FROM alert_events ORDER BY event_id"
        ).fetchall()
    assert rows == [
        (
            raised.alert_id,
            "threshold_low",
            "major",
            "resolved",
            150.0,
            200.0,
            215.0,
            t0 + 60_000,
            t0 + 240_000,
            "wp-eng-1: pressure 150 kPa is below the low limit 200 kPa",
        )
    ]
    assert [(e, p["event"], done) for e, p, done in events] == [
        ("raised", "raised", True),
        ("cleared", "cleared", True),
    ]
    assert json.loads(payload) == events[0][1]
    assert latency_ms < 1000


def _alert_counts(db_url: str) -> tuple[int, int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(cleared_at),"
            " (SELECT count(*) FROM alert_events WHERE published_at IS NULL) FROM alerts"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_engine_killed_during_an_alert_storm(
    settings: Settings,
    db_url: str,
    engine: EngineProcess,
    alert_subscriber: Recorder,
    tmp_path: Path,
) -> None:
    """kill -9 while a storm is being evaluated: no alert missed, none raised twice; every event
    reaches MQTT and the webhook route at least once. The route's URL is stored SM4-encrypted
    and the engine, given the key directory (CITYOPS_KEYS_DIR), decrypts it and SM2-signs
    every post."""
    n = 300
    ids = [f"gd-storm-{i:03d}" for i in range(n)]
    add_sensors(db_url, [(sid, "gas", "gas_detector") for sid in ids])
    thresholds_only(db_url)  # one alert per sensor: the 20 %LEL limit
    sink = HttpSink()
    keys = tmp_path / "keys"
    generate_keys(keys)
    ring = load_keyring(keys, environ={})
    engine.settings = settings.model_copy(update={"keys_dir": str(keys)})
    with psycopg.connect(db_url, autocommit=True) as conn:
        route = Route(0, "storm hook", "webhook", f"{sink.url}/storm", min_severity="critical")
        write_route(conn, route, ring)
    t0 = (time.time_ns() // 1_000_000) - 600_000
    engine.start()
    try:
        with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
            for step, (value, expect_cleared) in enumerate([(35.0, 0), (1.0, n)]):
                for i, sid in enumerate(ids):
                    payload = encode_reading(
                        t0 + step * 60_000 + i, step, {"gas_concentration": value}
                    )
                    pub.publish(telemetry_topic("gas", sid), payload)
                pub.flush()
                time.sleep(0.02 * step)  # kill at different points of the two storms
                assert engine.stop(signal.SIGKILL) == -signal.SIGKILL
                engine.start()
                wait_for(lambda ec=expect_cleared: _alert_counts(db_url) == (n, ec, 0), 30)
        wait_for(lambda: len(set(_keys(sink))) >= FLOOD_MAX, 10, what="the webhook deliveries")
    finally:
        sink.close()
    assert engine.stop() == 0

    with psycopg.connect(db_url) as conn:
        per_alert = conn.execute(
            "SELECT a.sensor_id, array_agg(e.event ORDER BY e.event_id) FROM alerts a"
            " JOIN alert_events e USING (alert_id) GROUP BY a.sensor_id ORDER BY a.sensor_id"
        ).fetchall()
        delivered = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'delivered'),"
            " count(*) FILTER (WHERE suppressed_reason = 'flood') FROM notification_deliveries"
        ).fetchone()
    assert per_alert == [(sid, ["raised", "cleared"]) for sid in ids]  # each exactly once
    seen: dict[tuple[int, str], int] = {}
    while not alert_subscriber.messages.empty():
        ev = decode_alert_event(alert_subscriber.get()[1])
        seen[(ev.alert_id, ev.event)] = seen.get((ev.alert_id, ev.event), 0) + 1
    assert len(seen) == 2 * n  # every raise and clear published at least once
    # one delivery row per raised alert; the route pages FLOOD_MAX times and records the rest
    assert delivered == (n, FLOOD_MAX, n - FLOOD_MAX)
    assert len(set(_keys(sink))) == FLOOD_MAX  # each delivered (at least) once
    public = ring.sm2_public[ring.sm2_active_id]
    for path, headers, body in sink.requests:
        header = {k.lower(): v for k, v in headers.items()}[SM2_SIGNATURE_HEADER.lower()]
        assert path == "/storm" and verify_signature_header(public, header, body, int(time.time()))
    print(
        f"MQTT duplicates after two kill -9: {sum(seen.values()) - 2 * n}; "
        f"webhook posts {len(sink.requests)} for {FLOOD_MAX} delivered, {n - FLOOD_MAX} flood-suppressed"
    )


def _keys(sink) -> list[str]:  # type: ignore[no-untyped-def]
    return [h["Idempotency-Key"] for p, h, _ in sink.requests if p == "/storm"]


def test_silent_sensor_and_gas_levels_through_the_service(
    settings: Settings, db_url: str, engine: EngineProcess, alert_subscriber: Recorder
) -> None:
    """Detectors from ``alert_detector_settings``: a gas detector crossing two %LEL levels (which
    replace the single 20 %LEL limit), then going silent (noticed by the engine's clock, not by
    a reading, once its 1-s rhythm is known), then back."""
    add_sensors(db_url, [("gd-e2e-1", "gas", "gas_detector")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE sensor_types SET expected_interval_s = 1 WHERE type_id = 'gas_detector'"
        )
        conn.execute(
            "UPDATE alert_detector_settings SET enabled = (detector IN ('gas_levels', 'silent')),"
            " severity = CASE detector WHEN 'silent' THEN 'major' ELSE 'warning' END"
            " WHERE type_id = 'gas_detector'"
        )
    topic = telemetry_topic("gas", "gd-e2e-1")

    def events(k: int) -> list[tuple[str, str]]:
        out = [decode_alert_event(alert_subscriber.get(timeout=15)[1]) for _ in range(k)]
        return [(e.event, e.kind) for e in out]

    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        pub.publish(
            topic, encode_reading(time.time_ns() // 1_000_000, 1, {"gas_concentration": 25.0})
        )
        pub.flush()
        assert sorted(events(2)) == [("raised", "gas_lel_alarm1"), ("raised", "gas_lel_prealarm")]
        time.sleep(1.0)  # a second arrival a second later: the detector's rhythm is known
        pub.publish(
            topic, encode_reading(time.time_ns() // 1_000_000, 2, {"gas_concentration": 25.5})
        )
        pub.flush()
        silent_at = time.monotonic()
        assert events(1) == [("raised", "silent")]  # 3 missed 1-s reports, after the start grace
        print(f"silent raised {time.monotonic() - silent_at:.1f} s after the last reading")
        pub.publish(
            topic, encode_reading(time.time_ns() // 1_000_000, 3, {"gas_concentration": 1.0})
        )
        pub.flush()
        assert events(3) == [
            ("cleared", "silent"),
            ("cleared", "gas_lel_alarm1"),
            ("cleared", "gas_lel_prealarm"),
        ]
    assert engine.stop() == 0
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT kind, severity, state FROM alerts ORDER BY alert_id").fetchall()
    assert rows == [
        ("gas_lel_prealarm", "warning", "resolved"),
        ("gas_lel_alarm1", "major", "resolved"),
        ("silent", "major", "resolved"),
    ]


def _database_reachable(stack, db_url: str, reachable: bool) -> None:  # type: ignore[no-untyped-def]
    """Cut (or restore) every connection to this test's database only. Stopping the shared
    server instead would move it to another port (see the report on cityops.shell.stack)."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_engine_rides_out_a_database_outage(
    stack, settings: Settings, db_url: str, engine: EngineProcess, alert_subscriber: Recorder
) -> None:  # type: ignore[no-untyped-def]
    """The database gone under the engine: no acknowledgement and no event while it is away,
    the alert raised once when it is back."""
    add_sensors(db_url, [("wp-out-1", "water", "water_pressure")])
    topic = telemetry_topic("water", "wp-out-1")
    t0 = (time.time_ns() // 1_000_000) - 600_000
    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        t0 = publish_until_evaluated(pub, db_url, "wp-out-1", t0, 300.0)
        _database_reachable(stack, db_url, False)
        try:
            pub.publish(topic, encode_reading(t0 + 60_000, 1, {"pressure": 120.0}))
            pub.flush()
            time.sleep(3)
            assert alert_subscriber.messages.empty()
            assert engine.proc is not None and engine.proc.poll() is None  # still running
        finally:
            _database_reachable(stack, db_url, True)
        raised = decode_alert_event(alert_subscriber.get(timeout=30)[1])
        assert (raised.event, raised.value) == ("raised", 120.0)
        pub.publish(topic, encode_reading(t0 + 120_000, 2, {"pressure": 110.0}))
        pub.flush()
        wait_for(lambda: evaluated_until(db_url, "wp-out-1", "pressure") == t0 + 120_000, 15)
    assert engine.stop() == 0
    assert alert_subscriber.messages.empty()
    assert "retrying" in engine.log()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (1,)


def test_a_message_the_database_refuses_is_dead_lettered_and_a_rollback_retried(
    settings: Settings, db_url: str, engine: EngineProcess, alert_subscriber: Recorder
) -> None:
    """A batch the database refuses (here: a trigger rejecting one sensor's alerts) is retried
    message by message; the refused message is kept in ``alert_dead_letters`` and acknowledged,
    the others are stored. A serialization failure (SQLSTATE 40001, a TransactionRollback) is
    transient: the engine retries until it passes, and the alert is stored once."""
    thresholds_only(db_url)
    add_sensors(
        db_url, [("wp-poison", "water", "water_pressure"), ("wp-fine", "water", "water_pressure")]
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE serialization_trouble (x int)")
        conn.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.sensor_id = 'wp-poison' THEN RAISE EXCEPTION 'refused for the test'; END IF;"
            " IF EXISTS (SELECT 1 FROM serialization_trouble) THEN"
            "   RAISE EXCEPTION 'could not serialize (test)' USING ERRCODE = '40001'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON alerts"
            " FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
    t0 = (time.time_ns() // 1_000_000) - 600_000
    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        t0 = publish_until_evaluated(pub, db_url, "wp-fine", t0, 300.0)
        poison = encode_reading(t0 + 60_000, 1, {"pressure": 100.0})
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO serialization_trouble VALUES (1)")
        pub.publish(telemetry_topic("water", "wp-poison"), poison)
        pub.publish(
            telemetry_topic("water", "wp-fine"),
            encode_reading(t0 + 60_000, 1, {"pressure": 100.0}),
        )
        pub.flush()
        wait_for(lambda: "storing alerts rolled back" in engine.log(), 15)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM serialization_trouble")
        raised = decode_alert_event(alert_subscriber.get(timeout=15)[1])
        assert (raised.sensor_id, raised.event) == ("wp-fine", "raised")
        # still alive and evaluating
        pub.publish(
            telemetry_topic("water", "wp-fine"),
            encode_reading(t0 + 120_000, 2, {"pressure": 300.0}),
        )
        pub.flush()
        cleared = decode_alert_event(alert_subscriber.get(timeout=15)[1])
        assert (cleared.sensor_id, cleared.event) == ("wp-fine", "cleared")
    assert engine.stop() == 0
    assert (
        "skipped a message the database refuses: topic city/water/wp-poison/telemetry"
        in engine.log()
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT sensor_id FROM alerts").fetchall() == [("wp-fine",)]
        letters = conn.execute(
            "SELECT topic, payload, payload_bytes, error, received_at > now() - interval '1 min'"
            " FROM alert_dead_letters"
        ).fetchall()
    assert len(letters) == 1
    topic, payload, size, error, recent = letters[0]
    assert (topic, bytes(payload), size, recent) == (
        "city/water/wp-poison/telemetry",
        poison,
        len(poison),
        True,
    )
    assert "refused for the test" in error
    # and the operators find it with `cityops dead-letters`
    shown = run_cityops(settings, "dead-letters", "--payload")
    assert shown.returncode == 0, shown.stderr
    assert (
        "city/water/wp-poison/telemetry" in shown.stdout and "refused for the test" in shown.stdout
    )
    assert str(len(poison)) in shown.stdout and repr(poison[:20])[2:-1] in shown.stdout
    status = run_cityops(settings, "status")
    assert "alert dead letters: 1" in status.stdout + status.stderr


def test_two_workers_split_the_sensors_by_partition(
    settings: Settings, db_url: str, alert_subscriber: Recorder
) -> None:
    """Scale-out: two workers, partitions 0/2 and 1/2, each evaluating only its own sensors;
    every alert raised once, each worker raising some of them."""
    ids = [f"wp-part-{i:02d}" for i in range(20)]
    add_sensors(db_url, [(sid, "water", "water_pressure") for sid in ids])
    workers = []
    stop = threading.Event()
    for k in range(2):
        s = settings.model_copy(update={"alerts_client_id": f"{settings.alerts_client_id}-w{k}"})
        svc = AlertService(s, stop, partition=(k, 2))
        thread = threading.Thread(target=svc.run, name=f"worker-{k}", daemon=True)
        thread.start()
        workers.append((svc, thread))
    try:
        time.sleep(3)  # both subscribed (no share group: each sees every message)
        t0 = (time.time_ns() // 1_000_000) - 60_000
        with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
            for sid in ids:
                pub.publish(
                    telemetry_topic("water", sid), encode_reading(t0, 1, {"pressure": 150.0})
                )
            pub.flush()
        events = [decode_alert_event(alert_subscriber.get(timeout=15)[1]) for _ in ids]
        # each worker also sees (and acknowledges) the other's 10: let the last batch finish
        wait_for(lambda: all(svc.stats.messages == len(ids) for svc, _ in workers), 15)
    finally:
        stop.set()
        for _, thread in workers:
            thread.join(20)
    assert sorted(e.sensor_id for e in events) == ids  # each once
    assert alert_subscriber.messages.empty()
    owned = [[sid for sid in ids if in_partition(sid, (k, 2))] for k in range(2)]
    assert all(owned) and sorted(owned[0] + owned[1]) == ids
    for k, (svc, _) in enumerate(workers):
        assert svc.stats.events == len(owned[k])
        assert svc.stats.other_partition == len(owned[1 - k])
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT sensor_id) FROM alerts"
        ).fetchone() == (20, 20)


def test_engine_waits_for_an_unreachable_broker_and_stops_cleanly(settings: Settings) -> None:
    s = settings.model_copy(
        update={"alerts_mqtt_url": f"mqtt://cityops-alerts:x@127.0.0.1:{free_port()}"}
    )
    eng = EngineProcess(s)
    with pytest.raises(RuntimeError):
        eng.start(timeout=8)  # never ready: nothing listens there
    assert eng.proc is not None and eng.proc.poll() is None  # still waiting, not crashed
    assert eng.stop() == 0
    wait_for(lambda: "broker not reachable yet" in eng.log(), 5)


def test_an_ephemeral_engine_leaves_no_session_behind(
    settings: Settings, db_url: str, engine: EngineProcess, alert_subscriber: Recorder
) -> None:
    """`cityops alerts --ephemeral` (replays, benchmarks) ends its broker session on stop:
    nothing is queued for it afterwards (a persistent engine's readings wait, see above)."""
    thresholds_only(db_url)
    add_sensors(db_url, [("wp-eph-1", "water", "water_pressure")])
    topic = telemetry_topic("water", "wp-eph-1")
    engine.start(20.0, "--ephemeral")
    assert engine.stop() == 0
    t0 = time.time_ns() // 1_000_000
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        pub.publish(topic, encode_reading(t0 - 60_000, 1, {"pressure": 150.0}))  # while down
        pub.flush()
        engine.start()  # same client id and group, persistent this time
        pub.publish(topic, encode_reading(t0, 2, {"pressure": 140.0}))
        pub.flush()
        raised = decode_alert_event(alert_subscriber.get(timeout=10)[1])
    assert engine.stop() == 0
    # the reading published while no session existed was never delivered: the alert comes
    # from the reading published after the restart
    assert (raised.event, raised.value) == ("raised", 140.0)
