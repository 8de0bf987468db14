"""The water balance's rules for leaks on top of leaks, incipient leaks and its state kept as
data (alerts/balance.py; pure, no services)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from alerts.balance import AreaEvent, AreaState, state_from_doc, state_to_doc, step_area
from alerts.engine import Engine
from sensors.payload import Reading
from tests.alerts.test_balance import MIN, SPEC, T0, usual

DAY = 1440  # [min]


def run(
    days: float, extra: Callable[[int], float], *, state: AreaState | None = None, start: int = 0
) -> tuple[AreaState, list[AreaEvent]]:
    """Feed the test area for ``days`` from T0 (5-minute points, 0.5 % meter noise);
    ``extra(minute)``: the flow a leak adds at inlet a [L/s]."""
    st, out = state or AreaState(), []
    for k in range(start, int(days * DAY / 5)):
        t = T0 + k * 5 * MIN
        a, b, c = usual(t)
        a += extra(k * 5)
        noise = np.random.default_rng([11, k]).normal(0, 0.005, 3)  # the same from any start
        readings = [
            ("in-a", t, a * (1 + noise[0])),
            ("in-b", t, b * (1 + noise[1])),
            ("out-c", t, c * (1 + noise[2])),
        ]
        st, events = step_area(SPEC, st, readings)
        out += events
    return st, out


def at_min(ev: AreaEvent) -> int:
    return round((ev.ts_us - T0) / MIN)


def leaks(*starts: tuple[int, float]) -> Callable[[int], float]:
    """Leaks that start at a minute and stay: (start minute, L/s)."""
    return lambda m: sum(q for start, q in starts if m >= start)


def test_a_second_leak_while_the_first_is_open_is_a_new_event() -> None:
    first, second = DAY + 360, 3 * DAY + 360  # day 2 and day 4, 06:00
    _, events = run(5, leaks((first, 6.0), (second, 6.0)))
    got = [(e.event, e.kind) for e in events]
    assert got[0] == ("raised", "night_flow_rise")
    assert first < at_min(events[0]) < first + DAY  # the first within 24 h
    steps = [e for e in events if e.kind == "night_flow_step"]
    assert [(e.event, at_min(e)) for e in steps] == [("raised", 4 * DAY + 240)]  # next night
    assert steps[0].value == pytest.approx(6.0, abs=1.5)  # its own step, not the total excess
    assert steps[0].sensor_id in {"in-a", "in-b", "out-c"}
    # nothing is cleared: both leaks are still there
    assert all(e.event != "cleared" for e in events)


def test_a_third_leak_gets_its_own_key() -> None:
    starts = ((DAY + 360, 6.0), (3 * DAY + 360, 6.0), (4 * DAY + 360, 6.0))
    _, events = run(6, leaks(*starts))
    steps = [e for e in events if e.kind == "night_flow_step" and e.event == "raised"]
    assert [at_min(e) for e in steps] == [4 * DAY + 240, 5 * DAY + 240]
    # alerts are unique per sensor and kind while active: each step on its own meter
    assert len({e.sensor_id for e in steps}) == 2


def test_a_leak_that_grows_is_recorded_and_escalated_not_raised_again() -> None:
    # 6 L/s from day 2, then 1.8 L/s more every day from day 4: no night is a step over the
    # one before, the growth is recorded on the open alert
    def extra(m: int) -> float:
        return 0.0 if m < DAY + 360 else 6.0 + 1.8 * max(0.0, (m - 3 * DAY) / DAY)

    _, events = run(8, extra)
    raised = [e for e in events if e.event == "raised"]
    assert [e.kind for e in raised] == ["night_flow_rise"]
    grown = [e for e in events if e.event == "grown"]
    assert grown and all(e.kind == "night_flow_rise" for e in grown)
    g = grown[0]
    assert g.before is not None and g.value - g.before >= 5.0
    # from the first night's 6 L/s to over 11: the excess over the level before the leak
    assert g.before == pytest.approx(6.0, abs=1.0) and g.value == pytest.approx(11.5, abs=1.5)


def test_an_open_leak_with_noise_only_records_nothing_more() -> None:
    _, events = run(6, leaks((DAY + 360, 6.0)))
    assert [(e.event, e.kind) for e in events] == [("raised", "night_flow_rise")]


def test_an_open_leak_is_cleared_against_its_pre_leak_level() -> None:
    # mended on day 5 at noon: the next night is back at the level before it
    _, events = run(6, lambda m: 6.0 if DAY + 360 <= m < 4 * DAY + 720 else 0.0)
    assert [(e.event, e.kind, at_min(e)) for e in events][1:] == [
        ("cleared", "night_flow_rise", 5 * DAY + 240)
    ]


def test_small_noise_and_a_quiet_week_raise_nothing() -> None:
    assert run(7, lambda _m: 0.0)[1] == []
    # a demand 1 L/s higher for one hour is no leak
    assert run(4, lambda m: 1.0 if 2 * DAY + 600 <= m < 2 * DAY + 660 else 0.0)[1] == []


def test_the_state_is_plain_data_and_round_trips() -> None:
    st, _ = run(3, leaks((DAY + 360, 6.0)))
    doc = json.loads(json.dumps(state_to_doc(st)))
    back = state_from_doc(doc)
    assert back == st
    # and a restart from it goes on exactly as without one
    _, after_restart = run(5, leaks((DAY + 360, 6.0), (3 * DAY + 360, 6.0)), state=back, start=864)
    _, straight = run(5, leaks((DAY + 360, 6.0), (3 * DAY + 360, 6.0)))
    assert [e for e in straight if e.ts_us >= T0 + 3 * DAY * MIN] == after_restart


@pytest.mark.parametrize("doc", [{}, {"v": 99}, {"v": 1, "latest": {}}, [1, 2], None])
def test_a_state_that_is_not_one_is_refused(doc: object) -> None:
    with pytest.raises(ValueError):
        state_from_doc(doc)  # type: ignore[arg-type]


def test_growth_through_the_engine_is_a_critical_grown_change_with_both_levels() -> None:
    eng = Engine({}, areas={"dma-1": SPEC})
    rng = np.random.default_rng(5)
    changes = []
    for k in range(8 * 288):
        t = T0 + k * 5 * MIN
        a, b, c = usual(t)
        m = k * 5
        a += 0.0 if m < DAY + 360 else 6.0 + 1.8 * max(0.0, (m - 3 * DAY) / DAY)
        ev = eng.evaluate(
            [
                Reading("in-a", "flow", t, a + rng.normal(0, 0.5), None),
                Reading("in-b", "flow", t, b, None),
                Reading("out-c", "flow", t, c, None),
            ]
        )
        eng.commit(ev)
        changes += ev.changes
    grown = [c for c in changes if c.event == "grown"]
    assert grown and grown[0].kind == "night_flow_rise" and grown[0].severity == "critical"
    assert "升至" in grown[0].message_zh and "rose from" in grown[0].message_en


def test_a_leak_found_by_day_says_so() -> None:
    eng = Engine({}, areas={"dma-1": SPEC})
    changes = []
    for k in range(2 * 288):
        t = T0 + k * 5 * MIN
        a, b, c = usual(t)
        a += 6.0 if k * 5 >= DAY + 360 else 0.0
        noise = np.random.default_rng([3, k]).normal(0, 0.5)
        ev = eng.evaluate(
            [
                Reading("in-a", "flow", t, a + noise, None),
                Reading("in-b", "flow", t, b, None),
                Reading("out-c", "flow", t, c, None),
            ]
        )
        eng.commit(ev)
        changes += ev.changes
    (ch,) = changes
    assert (ch.event, ch.kind, ch.severity) == ("raised", "night_flow_rise", "major")
    assert "持续高于" in ch.message_zh and "persistently above" in ch.message_en
