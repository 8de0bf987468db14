"""scenarios/stacked_leaks.yaml's physics (the simulators' Net3 model, no broker) through the
water balance: the first leak is found within 24 h, and each later one, started while the
first is still open, as a new ``night_flow_step`` within 24 h of its start. (The full run
through broker, engine and scoring: `cityops evaluate scenarios/stacked_leaks.yaml`.)"""

from __future__ import annotations

import numpy as np

from alerts.balance import AreaSpec, AreaState, step_area
from simulators.scenario import load_scenario, prepare_run
from tests.conftest import ROOT

H_US = 3_600_000_000


def test_stacked_leaks_are_each_found_as_their_own_event() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "stacked_leaks.yaml")
    run = prepare_run(scenario)
    ((area_id, (name, meters, storage)),) = run.world.metered_areas.items()
    spec = AreaSpec(area_id, name, tuple(meters), storage=frozenset(storage))
    pos = {s.sensor.sensor_id: i for i, s in enumerate(run.world.sensors)}
    starts = sorted(inc.start_s for inc in scenario.incidents)
    st, events = AreaState(), []
    for step in range(run.steps):
        truth, _, _ = run.world.truth(step * scenario.step_s, counterfactuals=False)
        ts_us = run.ts_ms(step) * 1000
        noise = np.random.default_rng([scenario.seed, step]).standard_normal(len(meters))
        # the simulators' meter noise: 0.5 % of the flow, 1 sigma
        readings = [
            (sid, ts_us, truth[pos[sid]]["flow"] * (1 + 0.005 * float(z)))
            for (sid, _), z in zip(meters, noise, strict=True)
        ]
        st, new = step_area(spec, st, readings)
        events += new
    t0 = run.ts_ms(0) * 1000
    hours = [(e.event, e.kind, (e.ts_us - t0) / H_US) for e in events]
    first, second, third = (s / 3600 for s in starts)
    assert [h[:2] for h in hours] == [
        ("raised", "night_flow_rise"),
        ("raised", "night_flow_step"),
        ("raised", "night_flow_step"),
    ], hours
    assert first < hours[0][2] <= first + 24
    assert second < hours[1][2] <= second + 24
    assert third < hours[2][2] <= third + 24
    # each step on its own meter: two alerts of one kind cannot be active on one sensor
    assert events[1].sensor_id != events[2].sensor_id
