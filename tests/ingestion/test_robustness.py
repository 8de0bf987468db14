"""Review fixes: a message the database refuses even in the quarantine is recorded minimally
and the writers go on; a database refusing every quarantine row stalls the worker, which
recovers; a decoder defect quarantines one message as ``internal_error``; the metrics address
and the ``cityops_ingest_healthy`` gauge; retention of the quarantine and of readings. On the
real broker and database."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import ingestion.service
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from cityops.shell.stack import free_port
from ingestion.maintenance import quarantine_keep_days
from ingestion.service import HEALTHY_WITHIN_S, Ingestor, is_healthy
from ingestion.store import IngestConnection, drop_old_quarantine
from sensors.payload import encode_reading
from tests.conftest import run_policy_jobs
from tests.ingestion.conftest import REFUSE_POISON_READING, now_ms, query, wait_for, water_topic

POISON = 666.25

# ... and quarantine rows whose payload names it
_REFUSE_QUARANTINED_POISON = """
CREATE FUNCTION refuse_poison_q() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF position(convert_to('666.25', 'UTF8') IN NEW.payload) > 0 THEN
        RAISE EXCEPTION 'poison quarantine row';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison_q BEFORE INSERT ON quarantine
    FOR EACH ROW EXECUTE FUNCTION refuse_poison_q();
"""
# ... or every quarantine row (a fault of the database, not of any message)
_REFUSE_ALL_QUARANTINE = """
CREATE FUNCTION refuse_all_q() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'quarantine refused'; END $$;
CREATE TRIGGER refuse_all_q BEFORE INSERT ON quarantine
    FOR EACH ROW EXECUTE FUNCTION refuse_all_q();
"""


def _sql(db_url: str, sql: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql)


def _threads_alive(ing: Ingestor) -> bool:
    return ing._decoder.is_alive() and all(w.is_alive() for w in ing._writers)


def _count(db_url: str, sql: str) -> int:
    return int(query(db_url, sql)[0][0])


def test_message_refused_even_in_quarantine_is_recorded_minimally_and_writers_go_on(
    settings: Settings, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    _sql(db_url, REFUSE_POISON_READING + _REFUSE_QUARANTINED_POISON)
    sid = water_sensors[0]
    t0 = now_ms() - 60_000
    ing = Ingestor(settings)
    ing.start()
    try:
        # a batch of one message: the single-message path
        alone = encode_reading(t0, 0, {"pressure": POISON})
        publisher.publish(water_topic(sid), alone)
        publisher.flush()
        wait_for(lambda: _count(db_url, "SELECT count(*) FROM quarantine") == 1)
        # then a burst with another one inside, then a second burst: all writers still work
        bodies = [
            encode_reading(t0 + k, k, {"pressure": POISON if k == 17 else 300.0 + k})
            for k in range(1, 41)
        ]
        for body in bodies[:20]:
            publisher.publish(water_topic(sid), body)
        publisher.flush()
        wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 19)
        for body in bodies[20:]:
            publisher.publish(water_topic(sid), body)
        publisher.flush()
        wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 39)
        rows = wait_for(
            lambda: (
                (
                    r := query(
                        db_url,
                        "SELECT reason, payload, payload_size, sensor_id, topic FROM quarantine"
                        " ORDER BY received_at",
                    )
                )
                and len(r) == 2
                and r
            )
        )
        assert [(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows] == [
            ("store_refused", b"", len(alone), None, water_topic(sid)),
            ("store_refused", b"", len(bodies[16]), None, water_topic(sid)),
        ]
        assert _threads_alive(ing)
        assert ing.health().state == "running" and ing.health().quarantined == 2
    finally:
        ing.stop()  # the session is kept: anything not acknowledged would come again
    ing2 = Ingestor(settings)
    ing2.start()
    try:
        time.sleep(1.5)  # a redelivery comes at once on reconnect
        assert ing2.metrics.received._value.get() == 0, "something was left unacknowledged"
        assert _count(db_url, "SELECT count(*) FROM quarantine") == 2
    finally:
        ing2.stop(end_session=True)


def test_database_refusing_every_quarantine_row_stalls_the_worker_until_it_accepts(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    _sql(db_url, REFUSE_POISON_READING + _REFUSE_ALL_QUARANTINE)
    sid = water_sensors[1]
    t0 = now_ms() - 60_000
    bodies = [
        encode_reading(t0 + k, k, {"pressure": POISON if k == 3 else 300.0 + k}) for k in range(10)
    ]
    for body in bodies:
        publisher.publish(water_topic(sid), body)
    publisher.flush()
    wait_for(lambda: ingestor.health().state == "stalled")
    wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 9)  # the rest went on
    time.sleep(0.5)
    assert _count(db_url, "SELECT count(*) FROM quarantine") == 0
    assert ingestor.health().state == "stalled" and _threads_alive(ingestor)
    _sql(db_url, "DROP TRIGGER refuse_all_q ON quarantine")
    rows = wait_for(lambda: query(db_url, "SELECT reason, payload FROM quarantine"), 20)
    assert [(r, bytes(p)) for r, p in rows] == [("store_refused", bodies[3])]
    wait_for(lambda: ingestor.health().state == "running")
    publisher.publish(water_topic(sid), encode_reading(t0 + 99, 99, {"pressure": 301.0}))
    publisher.flush()
    wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 10)
    assert _threads_alive(ingestor)


def test_decoder_defect_quarantines_the_message_as_internal_error_and_goes_on(
    ingestor: Ingestor,
    publisher: Publisher,
    db_url: str,
    water_sensors: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ingestion.service.decode_item

    def defective(topic: str, payload: bytes, *args: object, **kwargs: object) -> object:
        if b"boom" in payload:
            raise KeyError("boom")
        return real(topic, payload, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingestion.service, "decode_item", defective)
    sid = water_sensors[2]
    boom = b'{"v":1,"boom":true}'
    publisher.publish(water_topic(sid), boom)
    publisher.publish(water_topic(sid), encode_reading(now_ms(), 1, {"pressure": 300.0}))
    publisher.flush()
    wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 1)
    rows = wait_for(lambda: query(db_url, "SELECT reason, payload, detail FROM quarantine"))
    assert [(r, bytes(p), d) for r, p, d in rows] == [("internal_error", boom, "KeyError: 'boom'")]
    publisher.publish(water_topic(sid), boom)
    publisher.publish(water_topic(sid), encode_reading(now_ms() + 1, 2, {"pressure": 301.0}))
    publisher.flush()
    wait_for(lambda: _count(db_url, "SELECT count(*) FROM readings") == 2)
    assert _count(db_url, "SELECT count(*) FROM quarantine WHERE reason = 'internal_error'") == 2
    assert _threads_alive(ingestor)


def _healthcheck(port: int) -> int:
    """The compose healthcheck documented in docs/ingestion.md."""
    code = (
        "import sys, urllib.request; sys.exit(0 if b'cityops_ingest_healthy 1.0' in"
        f" urllib.request.urlopen('http://127.0.0.2:{port}/metrics', timeout=3).read() else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_metrics_served_on_metrics_host_with_a_healthy_gauge(settings: Settings) -> None:
    settings.metrics_port = port = free_port()
    settings.metrics_host = "127.0.0.2"  # loopback too, but not the old hard-coded address
    ing = Ingestor(settings)
    ing.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read()
        assert b"cityops_ingest_healthy 1.0" in body
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert _healthcheck(port) == 0
        ing.healthy_within_s = 0.0  # no commit or heartbeat "recently": unhealthy
        assert _healthcheck(port) == 1 and not ing.health().healthy
        ing.healthy_within_s = HEALTHY_WITHIN_S
        assert ing.health().healthy
    finally:
        ing.stop(end_session=True)
    assert not ing.health().healthy  # threads ended
    assert _healthcheck(port) != 0  # nothing serves the metrics any more


def test_is_healthy_and_quarantine_keep_days() -> None:
    assert is_healthy(100.0, 95.0, "running", True, 30.0)
    assert is_healthy(100.0, 95.0, "stalled", True, 30.0)  # stalled but recently committed
    assert not is_healthy(100.0, 60.0, "stalled", True, 30.0)
    assert not is_healthy(100.0, 95.0, "running", False, 30.0)  # a thread died
    assert not is_healthy(100.0, None, "running", True, 30.0)
    assert not is_healthy(100.0, 99.0, "stopped", True, 30.0)
    assert quarantine_keep_days(400) == 30
    assert quarantine_keep_days(7) == 7
    assert quarantine_keep_days(0) == 30  # readings kept for ever; the quarantine not


@pytest.mark.both_storage_paths
def test_maintenance_applies_retention_to_quarantine_readings_and_bookkeeping(
    settings: Settings, db_url: str
) -> None:
    for days in (40, 20, 1):
        query(
            db_url,
            "INSERT INTO quarantine (received_at, topic, payload, payload_size, reason)"
            " VALUES (now() - make_interval(days => %s), %s, '\\x00', 1, 'not_json')"
            " RETURNING 1",
            (days, f"t/{days}"),
        )
    # a day partition 45 days old, holding a reading
    _sql(
        db_url,
        "SELECT cityops_ensure_partitions(now() - interval '45 days', now() - interval '45 days')",
    )
    _sql(
        db_url,
        "INSERT INTO readings (sensor_id, quantity, ts, value)"
        " VALUES ('old', 'pressure', now() - interval '45 days', 1)",
    )
    for days in (50, 2):
        query(
            db_url,
            "INSERT INTO ingest_gaps (detected_at, client_id, kind) VALUES"
            " (now() - make_interval(days => %s), %s, 'session_lost') RETURNING 1",
            (days, f"w{days}"),
        )
        query(
            db_url,
            "INSERT INTO ingest_duplicates_1h (sensor_id, quantity, bucket, duplicates) VALUES"
            " ('s', 'pressure', date_trunc('hour', now() - make_interval(days => %s)), 3)"
            " RETURNING 1",
            (days,),
        )
    settings.retention_days = 42
    ing = Ingestor(settings)  # not started: _maintenance is what runs at start and hourly
    ic = IngestConnection(db_url, settings.ingest_client_id)
    try:
        ing._maintenance(ic)
        # TimescaleDB: the maintenance set the retention policy; its job drops the chunk
        run_policy_jobs(db_url, "policy_retention")
        assert query(db_url, "SELECT topic FROM quarantine ORDER BY topic") == [
            ("t/1",),
            ("t/20",),
        ]
        assert _count(db_url, "SELECT count(*) FROM readings WHERE sensor_id = 'old'") == 0
        # the bookkeeping follows the readings' retention
        assert query(db_url, "SELECT client_id FROM ingest_gaps") == [("w2",)]
        assert _count(db_url, "SELECT count(*) FROM ingest_duplicates_1h") == 1
        assert drop_old_quarantine(ic, 10) == 1
        assert query(db_url, "SELECT topic FROM quarantine") == [("t/1",)]
    finally:
        ic.close()
