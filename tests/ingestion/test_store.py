"""The write path of ``ingestion.store`` against the real database, on both storage paths: the
binary COPY round-trips exactly, a batch with a reading already stored falls back to the staged
insert and stores each reading once, and ``sensor_latest`` only moves forward."""

from __future__ import annotations

import time

import pytest

from ingestion.classify import Row
from ingestion.store import IngestConnection, compute_latest, write_batch
from tests.ingestion.conftest import add_sensors, query

pytestmark = pytest.mark.both_storage_paths

T0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000  # an hour ago [epoch us], whole seconds


def _rows(sid: str, start: int, n: int, *, seq: bool = True) -> list[Row]:
    return [
        (sid, "pressure", T0 + k * 1_000_000, 300.25 + k, k if seq else None, k % 2)
        for k in range(start, start + n)
    ]


def test_compute_latest_picks_the_newest_reading_per_key() -> None:
    rows: list[Row] = [
        ("b", "pressure", 5, 1.0, 1, 0),
        ("a", "flow", 9, 2.0, None, 0),
        ("b", "pressure", 7, 3.0, 2, 1),
        ("b", "pressure", 6, 4.0, 3, 0),
    ]
    assert compute_latest(rows, [10, 11, 12, 13]) == (
        ["a", "b"],
        ["flow", "pressure"],
        [9, 7],
        [2.0, 3.0],
        [None, 2],
        [11, 12],
    )


def test_binary_copy_round_trips_and_a_repeat_falls_back_to_the_staged_insert(
    db_url: str, storage_path: str
) -> None:
    sid = "store-a"
    add_sensors(db_url, [(sid, "water", "water_pressure")])
    ic = IngestConnection(db_url, "store-test")
    try:
        first = _rows(sid, 0, 5) + _rows(sid, 5, 2, seq=False)
        result = write_batch(ic, first, [T0 + 500] * len(first), [])
        assert (result.staged, result.inserted) == (7, 7)
        assert query(
            db_url,
            "SELECT (extract(epoch FROM ts) * 1e6)::bigint, value, seq, quality,"
            " (extract(epoch FROM received_at) * 1e6)::bigint"
            " FROM readings WHERE sensor_id = %s ORDER BY ts",
            (sid,),
        ) == [(r[2], r[3], r[4], r[5], T0 + 500) for r in first]
        # readings 5..6 again (already stored), 7..9 new, one of them twice in the batch
        again = _rows(sid, 5, 5) + _rows(sid, 8, 1)
        result = write_batch(ic, again, [T0 + 900] * len(again), [])
        assert (result.staged, result.inserted) == (6, 3)
        assert query(db_url, "SELECT count(*), count(DISTINCT ts) FROM readings") == [(10, 10)]
        assert query(db_url, "SELECT sum(duplicates) FROM ingest_duplicates_1h") == [(3,)]
        # the newest reading wins, and an older batch never moves it back
        write_batch(ic, _rows(sid, 0, 1), [T0 + 999], [])
        assert query(
            db_url, "SELECT seq, value FROM sensor_latest WHERE sensor_id = %s", (sid,)
        ) == [(9, 309.25)]
        assert query(db_url, "SELECT value FROM cityops_meta WHERE key = 'storage'") == [
            (storage_path,)
        ]
    finally:
        ic.close()
