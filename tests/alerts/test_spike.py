"""The spike test (alerts/detectors/spike.py): one reading late, a sensor-health alert cleared
after a quiet hour."""

from __future__ import annotations

from alerts.detectors import build_stream_config
from alerts.detectors.spike import step_spike
from tests.alerts.conftest import MIN, T0, feed, stream_engine


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
    spike = cfg.get("spike")
    assert spike is not None and (spike.rel, spike.floor) == (0.25, 30.0)
    eng = stream_engine({"pressure": cfg})
    values = [300.0, 301.0, 460.0, 302.0] + [300.0 + i % 3 for i in range(60)] + [301.0]
    got = feed(eng, "pressure", values)
    # 460 kPa is inside the limits, so the spike test alone speaks, at the reading after it
    assert got == [("raised", "spike", 3), ("cleared", "spike", 64)]
    st = eng.states[("s1", "pressure")]
    assert "spike" not in st.active and st.detectors["spike"].spike_us == T0 + 3 * MIN
