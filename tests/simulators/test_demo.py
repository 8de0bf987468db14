"""The demo simulator (`cityops simulate` without a scenario): pure generator and real broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cityops.kernel.settings import Settings
from sensors.catalogue import SENSOR_TYPES
from sensors.payload import TimeWindow, decode_message
from sensors.topics import parse_telemetry_topic
from simulators.demo import default_start_ms, parse_start_ms, read_catalogue, run
from simulators.mqtt import RunStats
from simulators.profiles import DemoGenerator, PressureDrop
from tests.listening import drain, subscribe

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "data" / "demo_sensors.geojson"
START_MS = parse_start_ms("2026-11-26T00:00:00+08:00")
WIDE = TimeWindow(max_past_s=1e10, max_future_s=1e10)


@pytest.fixture(scope="module")
def sensors():
    return read_catalogue(CATALOGUE)


def test_same_seed_same_bytes_other_seed_other_bytes(sensors) -> None:
    a = DemoGenerator(sensors, seed=42, start_ms=START_MS, interval_s=60)
    b = DemoGenerator(sensors, seed=42, start_ms=START_MS, interval_s=60)
    c = DemoGenerator(sensors, seed=43, start_ms=START_MS, interval_s=60)
    for step in (0, 1, 5, 17, 1440):
        pa = [(m.topic, m.payload) for m in a.messages(step)]
        assert pa == [(m.topic, m.payload) for m in b.messages(step)]
        assert pa != [(m.topic, m.payload) for m in c.messages(step)]
    # a step recomputed alone equals the same step in sequence
    assert [m.payload for m in a.messages(3)] == [m.payload for m in b.messages(3)]


def test_messages_decode_with_ts_and_sequence(sensors) -> None:
    gen = DemoGenerator(sensors, seed=1, start_ms=START_MS, interval_s=30)
    for step in (0, 1, 2):
        msgs = gen.messages(step)
        assert len(msgs) == 120
        for m in msgs:
            t = parse_telemetry_topic(m.topic)
            readings = decode_message(m.payload, t.sensor_id, START_MS * 1000, WIDE)
            assert {r.seq for r in readings} == {step + 1}
            assert {r.ts_us for r in readings} == {(START_MS + step * 30_000) * 1000}
            stype = next(s.sensor_type for s in sensors if s.sensor_id == t.sensor_id)
            assert {r.quantity for r in readings} == set(SENSOR_TYPES[stype].quantities)


def test_normal_readings_stay_inside_alarm_limits_all_day(sensors) -> None:
    gen = DemoGenerator(sensors, seed=9, start_ms=START_MS, interval_s=900, anomaly=None)
    by_id = {s.sensor_id: s for s in gen.sensors}
    ranges: dict[str, list[float]] = {}
    for step in range(96):  # a day at 15 minutes
        for m in gen.messages(step):
            limits = SENSOR_TYPES[by_id[m.sensor_id].sensor_type].limits
            for lim in limits:
                v = m.values[lim.quantity]
                ranges.setdefault(f"{by_id[m.sensor_id].sensor_type}.{lim.quantity}", []).append(v)
                if lim.alarm_low is not None:
                    assert v > lim.alarm_low + lim.deadband, (m.sensor_id, lim.quantity, v)
                if lim.alarm_high is not None:
                    assert v < lim.alarm_high - lim.deadband, (m.sensor_id, lim.quantity, v)
    wp = ranges["water_pressure.pressure"]
    assert min(wp) > 290 and max(wp) < 460
    assert max(wp) - min(wp) > 40  # the daily demand pattern shows
    v = ranges["power_bus.voltage"]
    assert min(v) > 9_900 and max(v) < 10_500
    f = ranges["power_bus.frequency"]
    assert min(f) > 49.9 and max(f) < 50.1
    gp = ranges["gas_pressure.pressure"]
    assert min(gp) > 165 and max(gp) < 195
    gc = ranges["gas_detector.gas_concentration"]
    assert min(gc) >= 0 and max(gc) <= 2.0


def test_scripted_drop_crosses_alarm_low_and_recovers(sensors) -> None:
    drop = PressureDrop(start_step=4, duration_steps=6)
    gen = DemoGenerator(sensors, seed=3, start_ms=START_MS, interval_s=60, anomaly=drop)
    limit = SENSOR_TYPES["water_pressure"].limits[0]
    series = []
    for step in range(16):
        (m,) = [m for m in gen.messages(step) if m.sensor_id == "wp-510104-1"]
        series.append(m.values["pressure"])
    before, window, after = series[:3], series[4:10], series[11:]
    assert all(v > limit.alarm_low + limit.deadband for v in before + after), series
    assert all(v < limit.alarm_low for v in window), series
    # the other sensors do not move with it
    other = DemoGenerator(sensors, seed=3, start_ms=START_MS, interval_s=60, anomaly=None)
    for step in (5, 6):
        a = [m.payload for m in gen.messages(step) if m.sensor_id != "wp-510104-1"]
        assert a == [m.payload for m in other.messages(step) if m.sensor_id != "wp-510104-1"]


def test_default_anomaly_shows_in_a_short_demo() -> None:
    d = PressureDrop()
    assert d.sensor_id == "wp-510104-1"
    assert 1 <= d.start_step <= 5 and d.start_step + d.duration_steps <= 15


def test_start_times() -> None:
    assert parse_start_ms("2026-11-26T08:00:00+08:00") == parse_start_ms("2026-11-26T00:00:00Z")
    assert parse_start_ms("2026-11-26T08:00:00") == parse_start_ms("2026-11-26T00:00:00+00:00")
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_start_ms("yesterday")
    now = 1_764_000_000.5
    assert default_start_ms(now, 60, 10) == (1_764_000_000 - 600) * 1000
    assert default_start_ms(now, 60, 0) == (1_764_000_000 - 30 * 60) * 1000


def test_end_to_end_publish_through_the_real_broker(settings: Settings, sensors) -> None:
    steps = 3
    drop = PressureDrop(start_step=1, duration_steps=1)
    consumer = subscribe(settings)
    try:
        stats = run(
            settings,
            catalogue=CATALOGUE,
            interval_s=60,
            steps=steps,
            speedup=0,
            seed=5,
            start="2026-11-26T08:00:00+08:00",
            anomaly=drop,
        )
        got = drain(consumer, steps * 120, timeout_s=20.0)
    finally:
        consumer.stop(end_session=True)
    assert stats.steps == steps and stats.messages == steps * 120
    gen = DemoGenerator(
        sensors,
        seed=5,
        start_ms=parse_start_ms("2026-11-26T08:00:00+08:00"),
        interval_s=60,
        anomaly=drop,
    )
    expected = [(m.topic, m.payload) for k in range(steps) for m in gen.messages(k)]
    assert sorted(got) == sorted(expected)
    (low,) = [p for t, p in got if t == "city/water/wp-510104-1/telemetry" and b'"seq":2' in p]
    assert decode_message(low, "wp-510104-1", START_MS * 1000, WIDE)[0].value < 200


def test_unbounded_run_stops_on_request_and_paces(settings: Settings, tmp_path: Path) -> None:
    one = tmp_path / "one.geojson"
    one.write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point",'
        '"coordinates":[104.07,30.66]},"properties":{"sensor_id":"gd-test-1",'
        '"sensor_type":"gas_detector"}}]}'
    )

    def run_until_stopped() -> tuple[float, RunStats]:
        stop = threading.Event()
        threading.Timer(0.6, stop.set).start()
        t = time.monotonic()
        stats = run(
            settings,
            catalogue=one,
            interval_s=1,
            steps=0,
            speedup=10,
            seed=1,
            start="2026-11-26T08:00:00+08:00",
            stop=stop,
        )
        return time.monotonic() - t, stats

    consumer = subscribe(settings)  # someone takes the telemetry: the run keeps its pace
    try:
        wall, stats = run_until_stopped()
    finally:
        consumer.stop(end_session=True)
    assert 0.5 < wall < 5
    assert 4 <= stats.steps <= 9  # one step per 0.1 s
    # where nobody takes it the first step waits for a subscriber (decision 0081): the stop
    # still ends the run at once
    wall, stats = run_until_stopped()
    assert 0.5 < wall < 2


def test_cli_simulate_publishes_the_demo_now(settings: Settings) -> None:
    from tests.conftest import run_cityops

    consumer = subscribe(settings)
    try:
        t0_ms = time.time() * 1000
        r = run_cityops(settings, "simulate", "--steps", "2", "--speedup", "0", "--seed", "2")
        assert r.returncode == 0, r.stderr
        got = drain(consumer, 2 * 120, timeout_s=20.0)
    finally:
        consumer.stop(end_session=True)
    assert len(got) == 240
    now_us = int(time.time() * 1e6)
    stamps = set()
    for topic, payload in got:
        sid = parse_telemetry_topic(topic).sensor_id
        # the default start is a backfill ending now: nothing stamped in the future
        stamps |= {r.ts_us for r in decode_message(payload, sid, now_us)}
    assert max(stamps) <= now_us and min(stamps) >= (t0_ms - 3 * 60_000) * 1000
    assert len(stamps) == 2
    assert "simulate: step 2/2" in r.stderr


def test_a_periodic_drop_repeats_its_window_and_recovery() -> None:
    from simulators.profiles import PressureDrop

    once = PressureDrop(start_step=3, duration_steps=10)
    every = PressureDrop(start_step=3, duration_steps=10, period_steps=30)
    for step in range(0, 30):
        assert every.weight(step) == once.weight(step)
        assert every.weight(step + 30) == once.weight(step)
        assert every.weight(step + 90) == once.weight(step)
    assert [every.in_window(s) for s in (2, 3, 12, 13, 33, 42, 43)] == [
        False,
        True,
        True,
        False,
        True,
        True,
        False,
    ]
