"""Reused sequence numbers (issue 14, decision 0015): a reading whose seq is already stored for
its sensor and quantity with another timestamp or value is quarantined as ``seq_reused`` and not
stored; an exact redelivery stays a silent duplicate; a device that reboots and counts from 0
again is stored. Through the real broker and database, on both storage paths, and with two
workers sharing the subscription."""

from __future__ import annotations

import pytest

from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from ingestion.seqreuse import SEQ_REUSE_WINDOW_US, find_batch_conflicts, find_seq_candidates
from ingestion.service import Ingestor
from sensors.payload import encode_batch, encode_reading
from tests.ingestion.conftest import now_ms, query, wait_for, water_topic

S = 1_000_000  # one second [us]


def _row(ts_s: int, seq: int | None, value: float = 1.0) -> tuple:
    return ("a", "pressure", ts_s * S, value, seq, 0)


def test_only_rows_that_do_not_move_their_sensor_forward_are_candidates() -> None:
    latest = {("a", "pressure"): (100 * S, 10)}
    rows = [
        _row(101, 11),  # forward
        _row(102, 0),  # a reboot: counts from 0 again with a newer ts
        _row(103, 1),  # ... and goes on from there
        _row(104, None),  # no sequence number: never checked
        _row(103, 1, 2.0),  # same seq as the row before, not newer: a candidate
        _row(99, 9),  # older than the newest stored: a candidate (late, or replayed)
        ("b", "pressure", 5 * S, 1.0, 3, 0),  # a sensor with nothing stored
    ]
    assert find_seq_candidates(rows, latest) == [4, 5]
    assert find_batch_conflicts(rows, [4, 5]) == {4: (103 * S, 1.0, "batch")}


def test_an_earlier_use_outside_the_window_is_no_conflict() -> None:
    far = SEQ_REUSE_WINDOW_US // S + 1
    rows = [_row(1000, 5), _row(1000 + far, 5), _row(1001, 5, 2.0), _row(1000, 5)]
    # an exact repeat (row 3) is a duplicate; row 1 used seq 5 more than the window later
    assert find_batch_conflicts(rows, [1, 2, 3]) == {2: (1000 * S, 1.0, "batch")}


def _reused(db_url: str, sid: str) -> list[tuple]:
    return query(
        db_url,
        "SELECT reason, detail, payload FROM quarantine WHERE sensor_id = %s ORDER BY id",
        (sid,),
    )


def _latest_seq(db_url: str, sid: str) -> int | None:
    """The seq of the sensor's newest reading in ``sensor_latest`` (written right after the
    commit on the direct path: what a later batch is judged against)."""
    rows = query(db_url, "SELECT seq FROM sensor_latest WHERE sensor_id = %s", (sid,))
    return rows[0][0] if rows else None


def _readings(db_url: str, sid: str) -> list[tuple]:
    return query(
        db_url,
        "SELECT seq, (extract(epoch FROM ts) * 1000)::bigint, value FROM readings"
        " WHERE sensor_id = %s ORDER BY ts",
        (sid,),
    )


@pytest.mark.both_storage_paths
def test_a_reused_seq_with_a_new_value_or_ts_is_quarantined_not_stored(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[0]
    t0 = now_ms() - 60_000
    publisher.publish(water_topic(sid), encode_reading(t0, 7, {"pressure": 300.0}))
    publisher.publish(water_topic(sid), encode_reading(t0 + 1000, 8, {"pressure": 301.0}))
    publisher.flush()
    wait_for(lambda: _latest_seq(db_url, sid) == 8)
    # a replay of seq 7 with an altered value, and a clone's seq 8 with a newer ts
    altered = encode_reading(t0, 7, {"pressure": 999.0})
    clone = encode_reading(t0 + 5000, 8, {"pressure": 302.0})
    publisher.publish(water_topic(sid), altered)
    publisher.publish(water_topic(sid), clone)
    publisher.flush()
    rows = wait_for(lambda: (r := _reused(db_url, sid)) and len(r) == 2 and r)
    assert [r[0] for r in rows] == ["seq_reused", "seq_reused"]
    assert [bytes(r[2]) for r in rows] == [altered, clone]
    assert "seq 7: stored ts" in rows[0][1] and "value 300.0" in rows[0][1]
    assert "value 999.0" in rows[0][1]
    assert "seq 8: stored ts" in rows[1][1] and "value 301.0; this message" in rows[1][1]
    # the stream goes on: the next number is stored; nothing of the reused ones is
    publisher.publish(water_topic(sid), encode_reading(t0 + 6000, 9, {"pressure": 303.0}))
    publisher.flush()
    wait_for(lambda: len(_readings(db_url, sid)) == 3)
    assert _readings(db_url, sid) == [(7, t0, 300.0), (8, t0 + 1000, 301.0), (9, t0 + 6000, 303.0)]
    assert ingestor.metrics.quarantined.labels("seq_reused")._value.get() == 2
    assert ingestor.health().quarantined == 2


@pytest.mark.both_storage_paths
def test_an_exact_redelivery_is_one_reading_and_nothing_quarantined(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[0]
    t0 = now_ms() - 60_000
    body = encode_reading(t0, 42, {"pressure": 310.5})
    publisher.publish(water_topic(sid), body)
    publisher.flush()
    wait_for(lambda: len(_readings(db_url, sid)) == 1)
    for _ in range(3):
        publisher.publish(water_topic(sid), body)
    publisher.flush()
    wait_for(lambda: ingestor.metrics.duplicates._value.get() == 3)
    assert _readings(db_url, sid) == [(42, t0, 310.5)]
    assert _reused(db_url, sid) == []
    assert ingestor.health().quarantined == 0


@pytest.mark.both_storage_paths
def test_a_reboot_counting_from_zero_again_is_stored(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid, gateway = water_sensors[0], water_sensors[1]
    t0 = now_ms() - 120_000
    expected = []
    # two runs of seq 0..4 within the window, a reboot between them, one message at a time
    for run in range(2):
        for k in range(5):
            ts = t0 + run * 10_000 + k * 1000
            publisher.publish(water_topic(sid), encode_reading(ts, k, {"pressure": 300.0 + k}))
            publisher.flush()
            expected.append((k, ts, 300.0 + k))
            wait_for(lambda k=k: _latest_seq(db_url, sid) == k)
    assert _readings(db_url, sid) == expected
    # a gateway's batches: a run, then one message in which it goes on and reboots (4, 5, then
    # 0, 1, 2 again, each newer)
    first = [(t0 + k * 1000, k, {"pressure": 300.0}) for k in range(4)]
    rebooted = [
        (t0 + (10 + j) * 1000, k, {"pressure": 301.0}) for j, k in enumerate((4, 5, 0, 1, 2))
    ]
    publisher.publish(water_topic(gateway), encode_batch(first))
    publisher.flush()
    wait_for(lambda: _latest_seq(db_url, gateway) == 3)
    publisher.publish(water_topic(gateway), encode_batch(rebooted))
    publisher.flush()
    wait_for(lambda: len(_readings(db_url, gateway)) == 9)
    assert query(db_url, "SELECT count(*) FROM quarantine") == [(0,)]


@pytest.mark.both_storage_paths
def test_a_message_reusing_a_seq_within_itself_is_quarantined_whole(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[0]
    t0 = now_ms() - 60_000
    body = encode_batch([(t0, 3, {"pressure": 300.0}), (t0 + 1000, 3, {"pressure": 305.0})])
    publisher.publish(water_topic(sid), body)
    publisher.publish(water_topic(sid), encode_reading(t0 + 2000, 4, {"pressure": 306.0}))
    publisher.flush()
    rows = wait_for(lambda: (r := _reused(db_url, sid)) and r)
    assert rows[0][0] == "seq_reused" and "seq 3: batch ts" in rows[0][1]
    wait_for(lambda: len(_readings(db_url, sid)) == 1)
    assert _readings(db_url, sid) == [(4, t0 + 2000, 306.0)]


def test_a_reuse_is_found_whichever_worker_receives_it(
    settings: Settings, db_url: str, water_sensors: list[str]
) -> None:
    """The check reads the database, so a copy that the shared subscription hands to the other
    worker is found as well: each worker receives some of the forged copies."""
    a = Ingestor(settings.model_copy(update={"ingest_client_id": settings.ingest_client_id + "-a"}))
    b = Ingestor(settings.model_copy(update={"ingest_client_id": settings.ingest_client_id + "-b"}))
    a.start()
    b.start()
    try:
        sid = water_sensors[0]
        t0 = now_ms() - 60_000
        with Publisher(settings.mqtt_url, f"pub-{settings.ingest_client_id}") as pub:
            pub.publish(water_topic(sid), encode_reading(t0, 1, {"pressure": 300.0}))
            pub.flush()
            wait_for(lambda: _latest_seq(db_url, sid) == 1)
            for k in range(20):
                forged = encode_reading(t0 + 1 + k, 1, {"pressure": 400.0 + k})
                pub.publish(water_topic(sid), forged)
            pub.flush()
        wait_for(lambda: a.health().quarantined + b.health().quarantined == 20)
        assert a.health().quarantined > 0 and b.health().quarantined > 0
        assert _readings(db_url, sid) == [(1, t0, 300.0)]
        assert query(db_url, "SELECT reason, count(*) FROM quarantine GROUP BY 1") == [
            ("seq_reused", 20)
        ]
    finally:
        a.stop(end_session=True)
        b.stop(end_session=True)
