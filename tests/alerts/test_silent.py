"""Silence (alerts/detectors/silent.py): raised by the stream's clock, on each key's own
rhythm, cleared by the next reading."""

from __future__ import annotations

from alerts.detectors import build_stream_config
from alerts.engine import SensorInfo
from sensors.payload import Reading
from tests.alerts.conftest import MIN, T0, feed, stream_engine

S = 1_000_000


def _silent_engine(severity: str = "warning"):  # type: ignore[no-untyped-def]
    cfg = build_stream_config("pressure", {"silent": (severity, {})})
    return stream_engine({"pressure": cfg})


def test_silent_raise_and_clear() -> None:
    eng = _silent_engine("major")
    feed(eng, "pressure", [350.0])
    assert eng.check_clock(T0 + 10 * MIN).changes == ()  # one reading: rhythm unknown
    feed(eng, "pressure", [350.5], start_min=1)  # every minute, as the type says
    last = T0 + MIN
    assert eng.check_clock(last + 3 * MIN).changes == ()  # 3 intervals: not yet
    ev = eng.check_clock(last + 3 * MIN + S)
    assert [(c.event, c.kind, c.severity, c.value, c.limit) for c in ev.changes] == [
        ("raised", "silent", "major", 181.0, 180.0)
    ]
    assert "181 秒无数据" in ev.changes[0].message_zh
    eng.commit(ev)
    assert eng.check_clock(T0 + 10 * MIN).changes == ()  # raised once
    got = feed(eng, "pressure", [351.0], start_min=11)
    assert got == [("cleared", "silent", 11)]


def test_duplicates_and_late_readings_are_not_the_sensor_speaking() -> None:
    eng = _silent_engine()
    for m in (0, 1, 2, 10, 11):
        feed(eng, "pressure", [300.0], start_min=m)
    # a duplicate of the last reading and a late one arrive: neither counts as a reading
    late = [Reading("s1", "pressure", T0 + m * MIN, 300.0, None) for m in (11, 3)]
    ev = eng.evaluate(late)
    assert ev.evaluated == 0
    eng.commit(ev)
    (ch,) = eng.check_clock(T0 + 20 * MIN).changes
    assert (ch.kind, ch.value) == ("silent", 540.0)  # silent since minute 11


def test_silence_follows_the_sensors_own_rhythm() -> None:
    eng = _silent_engine()
    for k in range(4):  # a gateway that reports every 5 minutes, not every minute as the type
        feed(eng, "pressure", [350.0 + k], start_min=5 * k)
    last = T0 + 15 * MIN
    assert eng.stream_us == last
    # 5 min since the last reading: 3 x the type's 60 s, but not 3 x the sensor's own 5 min
    assert eng.check_clock(last + 5 * MIN).changes == ()
    (ch,) = eng.check_clock(last + 15 * MIN + S).changes
    assert (ch.kind, ch.value, ch.limit) == ("silent", 901.0, 900.0)


def test_a_gateway_uploading_in_batches_is_not_silent_between_them() -> None:
    eng = _silent_engine()
    eng.sensors["s2"] = SensorInfo("s2", "water", "water_pressure", eng.sensors["s1"].limits)
    for k in range(6):  # s2 reports live every minute; s1's gateway uploads its three
        for m in range(15):  # 5-minute readings at the end of each quarter hour
            ev = eng.evaluate([Reading("s2", "pressure", T0 + (15 * k + m) * MIN, 300.0, None)])
            eng.commit(ev)
            # s1's newest reading is up to 19 min behind the stream's clock: not silent
            assert eng.check_clock(eng.stream_us or 0).changes == ()
        batch = [
            Reading("s1", "pressure", T0 + (15 * k + 5 * j) * MIN, 350.0, None) for j in range(3)
        ]
        eng.commit(eng.evaluate(batch))
    # and once it stops uploading, it is silent after 3 of its own 15-minute rhythms
    last = T0 + (15 * 5 + 10) * MIN
    for m in range(90, 150):
        eng.commit(eng.evaluate([Reading("s2", "pressure", T0 + m * MIN, 300.0, None)]))
        (ch,) = eng.check_clock(eng.stream_us or 0).changes or (None,)
        if ch is not None:
            break
    assert ch is not None and ch.sensor_id == "s1"
    assert 40 * MIN <= (eng.stream_us or 0) - last <= 50 * MIN


def test_one_fast_clock_does_not_make_the_others_silent() -> None:
    eng = _silent_engine()
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
        assert eng.check_clock(eng.stream_us or 0).changes == (), k
