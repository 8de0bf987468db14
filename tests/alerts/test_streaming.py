"""The engine's streaming detectors (pure): rate of change, stuck, silent, gas levels, and
restoring their state."""

from __future__ import annotations

import math
import time

import numpy as np
import psycopg

from alerts import store
from alerts.detectors import (
    step_flat,
    step_gas_levels,
    step_rate_of_change,
    step_spike,
    step_stuck,
)
from alerts.engine import Engine, KeyState, SensorInfo, StreamConfig
from alerts.params import build_stream_config
from sensors.catalogue import SENSOR_TYPES
from sensors.payload import Reading
from tests.alerts.conftest import add_sensors

S = 1_000_000
MIN = 60 * S
T0 = 1_764_115_200 * S


def engine(streams: dict[str, StreamConfig], stype: str = "water_pressure", utility: str = "water"):  # type: ignore[no-untyped-def]
    limits = {q.quantity: q for q in SENSOR_TYPES[stype].limits}
    return Engine({"s1": SensorInfo("s1", utility, stype, limits, 60.0, streams)})


def feed(
    eng: Engine, quantity: str, values: list[float], start_min: int = 0
) -> list[tuple[str, str, int]]:
    out = []
    for i, v in enumerate(values):
        ev = eng.evaluate([Reading("s1", quantity, T0 + (start_min + i) * MIN, v, None)])
        eng.commit(ev)
        out += [(c.event, c.kind, start_min + i) for c in ev.changes]
    return out


def test_step_functions() -> None:
    recent = [(T0, 300.0), (T0 + MIN, 301.0)]
    assert step_rate_of_change(
        recent, T0 + 2 * MIN, 240.0, max_change=50, window_s=300, active=False
    ) == (True, -60.0)
    # hysteresis: an active alert holds until the change is under 80 % of the limit
    assert step_rate_of_change(
        recent, T0 + 2 * MIN, 255.0, max_change=50, window_s=300, active=True
    )[0]
    assert not step_rate_of_change(
        recent, T0 + 2 * MIN, 261.0, max_change=50, window_s=300, active=True
    )[0]
    assert step_rate_of_change([], T0, 1.0, max_change=50, window_s=300, active=False) == (
        False,
        0.0,
    )
    flat = [(T0 + i * MIN, 5.0) for i in range(10)]
    assert step_stuck(
        flat, T0 + 10 * MIN, 5.0, window_s=600, tolerance=0.01, min_points=5, active=False
    )[0]
    assert not step_stuck(
        flat[:3], T0 + 10 * MIN, 5.0, window_s=600, tolerance=0.01, min_points=5, active=False
    )[0]
    assert not step_stuck(
        flat, T0 + 10 * MIN, 5.5, window_s=600, tolerance=0.01, min_points=5, active=True
    )[0]
    assert step_gas_levels(frozenset(), 55.0) == [
        ("raised", "gas_lel_prealarm", "warning", 10.0),
        ("raised", "gas_lel_alarm1", "major", 20.0),
        ("raised", "gas_lel_alarm2", "critical", 50.0),
    ]
    assert step_gas_levels(frozenset({"gas_lel_prealarm", "gas_lel_alarm1"}), 18.5) == []
    assert step_gas_levels(frozenset({"gas_lel_prealarm", "gas_lel_alarm1"}), 18.0) == [
        ("cleared", "gas_lel_alarm1", "major", 20.0)
    ]


def test_rate_of_change_in_the_engine() -> None:
    cfg = build_stream_config(
        "pressure", {"rate_of_change": ("major", {"max_change": 50, "window_s": 300})}
    )
    eng = engine({"pressure": cfg})
    got = feed(eng, "pressure", [350, 351, 352, 280, 281, 282, 283, 284, 285, 286])
    # 280 kPa is inside the limits [200, 700]: only the rate of change fires
    assert got == [("raised", "rate_of_change", 3), ("cleared", "rate_of_change", 8)]
    change = eng.evaluate([Reading("s1", "pressure", T0 + 20 * MIN, 350.0, None)])
    assert change.changes == ()  # after a 10-minute gap there is nothing in the window: no jump


def test_stuck_and_its_recovery_in_the_engine() -> None:
    eng = engine(
        {"pressure": build_stream_config("pressure", {"stuck": ("warning", {"window_s": 600})})}
    )
    values = [350 + (i % 3) for i in range(5)] + [348.0] * 12 + [350.0]
    got = feed(eng, "pressure", values)
    # flat from minute 5: stuck once the run spans 90 % of the 10-minute window (minute 14)
    assert got == [("raised", "stuck", 14), ("cleared", "stuck", 17)]


def test_silent_raise_and_clear() -> None:
    eng = engine({"pressure": build_stream_config("pressure", {"silent": ("major", {})})})
    feed(eng, "pressure", [350.0])
    assert eng.check_silence(T0 + 10 * MIN).changes == ()  # one reading: rhythm unknown
    feed(eng, "pressure", [350.5], start_min=1)  # every minute, as the type says
    last = T0 + MIN
    assert eng.check_silence(last + 3 * MIN).changes == ()  # 3 intervals: not yet
    ev = eng.check_silence(last + 3 * MIN + S)
    assert [(c.event, c.kind, c.severity, c.value, c.limit) for c in ev.changes] == [
        ("raised", "silent", "major", 181.0, 180.0)
    ]
    assert "181 秒无数据" in ev.changes[0].message_zh
    eng.commit(ev)
    assert eng.check_silence(T0 + 10 * MIN).changes == ()  # raised once
    got = feed(eng, "pressure", [351.0], start_min=11)
    assert got == [("cleared", "silent", 11)]


def test_gas_levels_replace_the_single_threshold() -> None:
    eng = engine(
        {
            "gas_concentration": build_stream_config(
                "gas_concentration", {"gas_levels": ("warning", {})}
            )
        },
        "gas_detector",
        "gas",
    )
    got = feed(eng, "gas_concentration", [1, 12, 25, 55, 30, 17, 5, math.nan, 1])
    assert got == [
        ("raised", "gas_lel_prealarm", 1),
        ("raised", "gas_lel_alarm1", 2),
        ("raised", "gas_lel_alarm2", 3),
        ("cleared", "gas_lel_alarm2", 4),
        ("cleared", "gas_lel_alarm1", 5),
        ("cleared", "gas_lel_prealarm", 6),
    ]


def test_restored_state_raises_nothing_twice() -> None:
    cfg = build_stream_config("gas_concentration", {"gas_levels": ("warning", {})})
    eng = engine({"gas_concentration": cfg}, "gas_detector", "gas")
    feed(eng, "gas_concentration", [25.0])
    restored = engine({"gas_concentration": cfg}, "gas_detector", "gas")
    restored.states = {k: KeyState(s.last_ts_us, s.active) for k, s in eng.states.items()}
    assert feed(restored, "gas_concentration", [25.0, 26.0], start_min=0) == []
    assert feed(restored, "gas_concentration", [1.0], start_min=2) == [
        ("cleared", "gas_lel_alarm1", 2),
        ("cleared", "gas_lel_prealarm", 2),
    ]


def test_defaults_and_overrides() -> None:
    cfg = build_stream_config(
        "pressure",
        {
            "rate_of_change": ("warning", {}),
            "stuck": ("info", {"tolerance": 0.5}),
            "silent": ("major", {"factor": 5}),
        },
    )
    assert cfg.rate == (50.0, 300.0) and cfg.stuck == (3600.0, 0.5, 5) and cfg.silent_factor == 5.0
    # history kept per key: the rate window (the stuck test keeps a constant-size run)
    assert cfg.window_s == 300.0 and cfg.severity == {
        "rate_of_change": "warning",
        "stuck": "info",
        "silent": "major",
    }
    # active power has no default rate limit: the detector stays off unless one is given
    assert build_stream_config("active_power", {"rate_of_change": ("warning", {})}).rate is None


def test_windows_refilled_from_stored_readings_after_a_restart(db_url: str) -> None:
    """A restarted engine finds the rate-of-change window in ``readings`` and raises on the
    first reading after the restart (without it, it would need a fresh window)."""
    add_sensors(db_url, [("wp-w1", "water", "water_pressure")])
    t0 = (time.time_ns() // 1000 // MIN) * MIN - 10 * MIN
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_detector_settings (type_id, quantity, detector, params) VALUES"
            " ('water_pressure', 'pressure', 'rate_of_change', '{\"max_change\": 50, \"window_s\": 300}')"
        )
        sensors = store.read_sensors(conn)
        first = Engine(sensors)
        readings = [Reading("wp-w1", "pressure", t0 + i * MIN, 350.0 + i, None) for i in range(4)]
        ev = first.evaluate(readings)
        store.write_evaluation(conn, ev)
        first.commit(ev)
        # what ingestion stored meanwhile (the same readings, and a newer one not yet evaluated)
        for r in [*readings, Reading("wp-w1", "pressure", t0 + 9 * MIN, 1.0, None)]:
            conn.execute(
                "INSERT INTO readings (sensor_id, quantity, ts, value) VALUES (%s, %s, %s, %s)",
                (r.sensor_id, r.quantity, store.ts_from_us(r.ts_us), r.value),
            )
        cold = Engine(sensors, store.read_states(conn))
        warm = Engine(sensors, store.read_recent_windows(conn, sensors, store.read_states(conn)))
    assert warm.states[("wp-w1", "pressure")].recent == tuple((r.ts_us, r.value) for r in readings)
    drop = [Reading("wp-w1", "pressure", t0 + 4 * MIN, 280.0, None)]
    assert [c.kind for c in cold.evaluate(drop).changes] == []
    assert [c.kind for c in warm.evaluate(drop).changes] == ["rate_of_change"]


def test_dead_bus_raises_low_voltage_only() -> None:
    eng = engine({}, "power_bus", "power")
    got = []
    for i, (v, f) in enumerate([(10_100.0, 50.0), (0.0, 0.0), (0.0, 0.0), (10_050.0, 50.01)]):
        ev = eng.evaluate(
            [
                Reading("s1", "voltage", T0 + i * MIN, v, None),
                Reading("s1", "frequency", T0 + i * MIN, f, None),
            ]
        )
        eng.commit(ev)
        got += [(c.event, c.quantity, c.kind, i) for c in ev.changes]
    assert got == [
        ("raised", "voltage", "threshold_low", 1),
        ("cleared", "voltage", "threshold_low", 3),
    ]
    # a real under-frequency with voltage present still raises
    ev = eng.evaluate([Reading("s1", "frequency", T0 + 5 * MIN, 49.5, None)])
    assert [(c.quantity, c.kind) for c in ev.changes] == [("frequency", "threshold_low")]


def test_spike_test_on_its_own() -> None:
    # the middle reading stands out from both neighbours, which agree: a spike, one reading late
    assert step_spike((300.0, 450.0), 302.0, rel=0.25, floor=30.0) == 450.0 - 301.0
    assert step_spike((300.0, 150.0), 299.0, rel=0.25, floor=30.0) == 150.0 - 299.5
    # a step that stays (a burst, a pump trip) is no spike
    assert step_spike((300.0, 150.0), 152.0, rel=0.25, floor=30.0) is None
    # within the band, or too few readings: nothing
    assert step_spike((300.0, 340.0), 301.0, rel=0.25, floor=30.0) is None
    assert step_spike((300.0,), 301.0, rel=0.25, floor=30.0) is None
    # near zero the floor keeps noise from counting
    assert step_spike((0.5, 3.0), 0.4, rel=0.5, floor=5.0) is None


def test_spike_raised_when_the_reading_comes_back_and_cleared_after_a_quiet_hour() -> None:
    cfg = build_stream_config("pressure", {"spike": ("warning", {})})
    assert cfg.spike == (0.25, 30.0)
    eng = engine({"pressure": cfg})
    values = [300.0, 301.0, 460.0, 302.0] + [300.0 + i % 3 for i in range(60)] + [301.0]
    got = feed(eng, "pressure", values)
    # 460 kPa is inside the limits, so the spike test alone speaks, at the reading after it
    assert got == [("raised", "spike", 3), ("cleared", "spike", 64)]
    st = eng.states[("s1", "pressure")]
    assert "spike" not in st.active and st.spike_us == T0 + 3 * MIN


def test_silence_follows_the_sensors_own_rhythm() -> None:
    eng = engine({"pressure": build_stream_config("pressure", {"silent": ("warning", {})})})
    for k in range(4):  # a gateway that reports every 5 minutes, not every minute as the type
        feed(eng, "pressure", [350.0 + k], start_min=5 * k)
    last = T0 + 15 * MIN
    assert eng.stream_us == last
    # 5 min since the last reading: 3 x the type's 60 s, but not 3 x the sensor's own 5 min
    assert eng.check_silence(last + 5 * MIN).changes == ()
    (ch,) = eng.check_silence(last + 15 * MIN + S).changes
    assert (ch.kind, ch.value, ch.limit) == ("silent", 901.0, 900.0)


def test_threshold_on_delay_lets_one_stray_reading_pass() -> None:
    cfg = build_stream_config("pressure", {"threshold": ("warning", {"on_delay": 2})})
    assert cfg.on_delay == 2 and "threshold" not in cfg.severity
    eng = engine({"pressure": cfg})
    got = feed(eng, "pressure", [300.0, 150.0, 300.0, 150.0, 140.0, 300.0])
    assert got == [("raised", "threshold_low", 4), ("cleared", "threshold_low", 5)]
    assert build_stream_config("pressure", {}).on_delay == 1  # default: page at once


def test_gas_rise_only() -> None:
    cfg = build_stream_config(
        "gas_concentration",
        {"rate_of_change": ("major", {"max_change": 0.4, "window_s": 600, "direction": "rise"})},
    )
    eng = engine({"gas_concentration": cfg}, "gas_detector", "gas")
    got = feed(eng, "gas_concentration", [0.2, 0.2, 0.9, 4.0, 4.2, 4.2, 0.2, 0.2])
    # raised by the rise; the fall at the end clears it and raises nothing
    assert [g[:2] for g in got] == [("raised", "rate_of_change"), ("cleared", "rate_of_change")]


def test_a_gateway_uploading_in_batches_is_not_silent_between_them() -> None:
    eng = engine({"pressure": build_stream_config("pressure", {"silent": ("warning", {})})})
    eng.sensors["s2"] = SensorInfo("s2", "water", "water_pressure", eng.sensors["s1"].limits)
    for k in range(6):  # s2 reports live every minute; s1's gateway uploads its three
        for m in range(15):  # 5-minute readings at the end of each quarter hour
            ev = eng.evaluate([Reading("s2", "pressure", T0 + (15 * k + m) * MIN, 300.0, None)])
            eng.commit(ev)
            # s1's newest reading is up to 19 min behind the stream's clock: not silent
            assert eng.check_silence(eng.stream_us or 0).changes == ()
        batch = [
            Reading("s1", "pressure", T0 + (15 * k + 5 * j) * MIN, 350.0, None) for j in range(3)
        ]
        eng.commit(eng.evaluate(batch))
    # and once it stops uploading, it is silent after 3 of its own 15-minute rhythms
    last = T0 + (15 * 5 + 10) * MIN
    for m in range(90, 150):
        eng.commit(eng.evaluate([Reading("s2", "pressure", T0 + m * MIN, 300.0, None)]))
        (ch,) = eng.check_silence(eng.stream_us or 0).changes or (None,)
        if ch is not None:
            break
    assert ch is not None and ch.sensor_id == "s1"
    assert 40 * MIN <= (eng.stream_us or 0) - last <= 50 * MIN


def test_the_streams_flat_run_agrees_with_the_window_rule() -> None:
    # a noisy random walk with two flat stretches (one long enough, one too short)
    rng = np.random.default_rng(5)
    values = list(300 + np.cumsum(rng.normal(0, 2, 200)))
    values[40:120] = [values[40]] * 80  # 80 min flat: stuck after 54 min (90 % of 60)
    values[150:170] = [values[150]] * 20  # 20 min flat: not stuck
    window, tol, pts = 3600.0, 0.01, 5
    recent: list[tuple[int, float]] = []
    flat = None
    active_w = active_f = False
    raised_w, raised_f = [], []
    for i, v in enumerate(values):
        t = T0 + i * MIN
        now_w, _ = step_stuck(
            recent, t, v, window_s=window, tolerance=tol, min_points=pts, active=active_w
        )
        now_f, flat, _ = step_flat(
            flat, t, v, window_s=window, tolerance=tol, min_points=pts, active=active_f
        )
        if now_w and not active_w:
            raised_w.append(i)
        if now_f and not active_f:
            raised_f.append(i)
        active_w, active_f = now_w, now_f
        recent = [(ts, x) for ts, x in recent if ts >= t - window * S] + [(t, v)]
    # both once, in the long stretch: the run after 90 % of the window (54 min), the window
    # rule when the whole hour before is flat (60 min); never in the short stretch
    assert raised_f == [94] and raised_w == [100]


def test_restored_spike_and_stuck_alerts_clear_as_they_should() -> None:
    cfg = build_stream_config(
        "pressure", {"spike": ("warning", {}), "stuck": ("warning", {"window_s": 600})}
    )
    eng = engine({"pressure": cfg})
    # after a restart only the active kinds come back from the database
    eng.states = {("s1", "pressure"): KeyState(T0, frozenset({"spike", "stuck"}))}
    got = feed(eng, "pressure", [300.0] * 3, start_min=1)
    assert got == []  # still flat: stuck stays; no spike yet for an hour: spike stays
    got = feed(eng, "pressure", [300.0 + (i % 2) for i in range(62)], start_min=4)
    # moving again clears stuck at once; an hour without a spike clears spike
    assert got == [("cleared", "stuck", 5), ("cleared", "spike", 62)]


def test_one_fast_clock_does_not_make_the_others_silent() -> None:
    eng = engine({"pressure": build_stream_config("pressure", {"silent": ("warning", {})})})
    for sid in ("s2", "s3", "skewed"):
        eng.sensors[sid] = SensorInfo(
            sid,
            "water",
            "water_pressure",
            eng.sensors["s1"].limits,
            60.0,
            eng.sensors["s1"].streams,
        )
    for k in range(30):  # every minute; one sensor's clock runs 10 minutes fast
        t = T0 + k * MIN
        batch = [Reading(s, "pressure", t, 300.0, None) for s in ("s1", "s2", "s3")]
        batch.append(Reading("skewed", "pressure", t + 10 * MIN, 300.0, None))
        eng.commit(eng.evaluate(batch))
        assert eng.check_silence(eng.stream_us or 0).changes == (), k
