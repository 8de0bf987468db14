"""The streaming engine with its detectors (pure): the registry's configuration, any detector
plugged in, input cleaning, and restoring state after a restart. Each detector's own rules
are tested in tests/alerts/test_<detector>.py."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest

from alerts.detectors import StreamConfig, build_stream_config
from alerts.detectors.base import Detector, Observation, Setting, Signal
from alerts.detectors.rate_of_change import RateOfChange, Window
from alerts.detectors.silent import Silent
from alerts.detectors.spike import SpikeState
from alerts.detectors.stuck import Stuck
from alerts.detectors.threshold import Threshold
from alerts.engine import Engine, KeyState, restored_states, wanted_history
from alerts.stores import alert_rows, detector_state
from alerts.stores.batch import write_evaluation
from alerts.stores.catalogue import read_sensors
from alerts.stores.times import ts_from_us
from sensors.payload import PayloadError, Reading, decode_message, encode_reading
from tests.alerts.conftest import MIN, T0, add_sensors, feed, stream_engine

S = 1_000_000


def test_defaults_and_overrides() -> None:
    cfg = build_stream_config(
        "pressure",
        {
            "rate_of_change": ("warning", {}),
            "stuck": ("info", {"tolerance": 0.5}),
            "silent": ("major", {"factor": 5}),
            "no_such_detector": ("major", {}),  # ignored
        },
    )
    # each detector with its own parameters (defaults for the quantity, overridden by the row)
    # and the row's severity; the threshold always, in registry order
    assert cfg.detectors == (
        Threshold(on_delay=1),
        Silent("major", 5.0),
        RateOfChange("warning", 50.0, 300.0),
        Stuck("info", 3600.0, 0.5, 5),
    )
    # history kept per key: the rate window (the stuck test keeps a constant-size run)
    assert cfg.history_s == 300.0
    # active power has no default rate limit: the detector stays off unless one is given
    rows = {"rate_of_change": ("warning", {})}
    assert build_stream_config("active_power", rows).get("rate_of_change") is None


@dataclass(frozen=True, slots=True)
class _Countdown(Detector[int]):
    """A detector the engine has never heard of: raises ``low_battery`` on a key's third
    reading, counting in a state of its own."""

    name: ClassVar[str] = "countdown"

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> _Countdown:
        return cls()

    def step(self, state: int | None, obs: Observation) -> tuple[int | None, list[Signal]]:
        n = (state or 0) + 1
        if n != 3 or "low_battery" in obs.active:
            return n, []
        return n, [Signal("raised", "low_battery", "info", obs.value, None, ("电量低", "low"))]


def test_the_engine_runs_whatever_detectors_it_is_given() -> None:
    eng = stream_engine({"pressure": StreamConfig((_Countdown(),))})
    assert feed(eng, "pressure", [300.0] * 4) == [("raised", "low_battery", 2)]
    st = eng.states[("s1", "pressure")]
    assert st.detectors == {"countdown": 4} and st.active == {"low_battery"}


def test_a_batch_is_cleaned_like_a_series() -> None:
    """Within a batch: time order, the first of each timestamp, non-finite values dropped."""
    spike = build_stream_config("pressure", {"spike": ("warning", {})})
    eng = stream_engine({"pressure": spike})
    batch = [
        Reading("s1", "pressure", T0 + t * S, v, None)
        for t, v in [(3, 330.0), (1, 310.0), (2, math.nan), (1, 311.0), (4, math.inf)]
    ]
    ev = eng.evaluate(batch)
    assert ev.evaluated == 2
    st = ev.states[("s1", "pressure")]
    assert st.last_ts_us == T0 + 3 * S and st.detectors["spike"] == SpikeState((310.0, 330.0))


def test_impossible_values_never_reach_a_detector() -> None:
    """Sensor faults (QARTOD gross range: sentinels, values outside the quantity's physical
    range) are refused at the boundary the engine reads through, so no process alarm."""
    now_us = T0 + MIN
    for raw in (-9999.0, 20_000.0, 65535.0):
        with pytest.raises(PayloadError):
            decode_message(encode_reading(T0 // 1000, 1, {"pressure": raw}), "s1", now_us)
    eng = stream_engine({})
    assert eng.evaluate([Reading("s1", "pressure", T0, math.nan, None)]).evaluated == 0


def test_restored_state_raises_nothing_twice() -> None:
    cfg = build_stream_config("gas_concentration", {"gas_levels": ("warning", {})})
    eng = stream_engine({"gas_concentration": cfg}, "gas_detector", "gas")
    feed(eng, "gas_concentration", [25.0])
    restored = stream_engine({"gas_concentration": cfg}, "gas_detector", "gas")
    restored.states = {k: KeyState(s.last_ts_us, s.active) for k, s in eng.states.items()}
    assert feed(restored, "gas_concentration", [25.0, 26.0], start_min=0) == []
    assert feed(restored, "gas_concentration", [1.0], start_min=2) == [
        ("cleared", "gas_lel_alarm1", 2),
        ("cleared", "gas_lel_prealarm", 2),
    ]


def test_restored_spike_and_stuck_alerts_clear_as_they_should() -> None:
    cfg = build_stream_config(
        "pressure", {"spike": ("warning", {}), "stuck": ("warning", {"window_s": 600})}
    )
    eng = stream_engine({"pressure": cfg})
    # after a restart only the active kinds come back from the database
    eng.states = {("s1", "pressure"): KeyState(T0, frozenset({"spike", "stuck"}))}
    got = feed(eng, "pressure", [300.0] * 3, start_min=1)
    assert got == []  # still flat: stuck stays; no spike yet for an hour: spike stays
    got = feed(eng, "pressure", [300.0 + (i % 2) for i in range(62)], start_min=4)
    # moving again clears stuck at once; an hour without a spike clears spike
    assert got == [("cleared", "stuck", 5), ("cleared", "spike", 62)]


def _restored(conn: psycopg.Connection, sensors: Mapping[str, Any], *, warm: bool) -> Engine:
    last = detector_state.read_last_evaluated(conn)
    active = alert_rows.read_active_kinds(conn)
    wanted = wanted_history(sensors) if warm else {}
    history = detector_state.read_recent_readings(conn, wanted)
    return Engine(sensors, restored_states(sensors, last, active, history))


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
        sensors = read_sensors(conn)
        first = Engine(sensors)
        readings = [Reading("wp-w1", "pressure", t0 + i * MIN, 350.0 + i, None) for i in range(4)]
        ev = first.evaluate(readings)
        write_evaluation(conn, ev)
        first.commit(ev)
        # what ingestion stored meanwhile (the same readings, and a newer one not yet evaluated)
        for r in [*readings, Reading("wp-w1", "pressure", t0 + 9 * MIN, 1.0, None)]:
            conn.execute(
                "INSERT INTO readings (sensor_id, quantity, ts, value) VALUES (%s, %s, %s, %s)",
                (r.sensor_id, r.quantity, ts_from_us(r.ts_us), r.value),
            )
        cold = _restored(conn, sensors, warm=False)
        warm = _restored(conn, sensors, warm=True)
    window = Window(tuple((r.ts_us, r.value) for r in readings))
    assert warm.states[("wp-w1", "pressure")].detectors["rate_of_change"] == window
    drop = [Reading("wp-w1", "pressure", t0 + 4 * MIN, 280.0, None)]
    assert [c.kind for c in cold.evaluate(drop).changes] == []
    assert [c.kind for c in warm.evaluate(drop).changes] == ["rate_of_change"]


def test_dead_bus_raises_low_voltage_only() -> None:
    eng = stream_engine({}, "power_bus", "power")
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
