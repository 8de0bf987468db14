"""Simulators: the demo (statistical profiles, `cityops simulate`) and physics-based scenarios
(EPANET water, pandapower power, pandapipes gas) with sensor faults and ground truth.

Nothing else in cityops imports this package. Pure modules: profiles, spec, water, power, gas,
world, faults, run; adapters: mqtt (broker), store (database), scenario and demo (wiring).
See docs/simulators.md.
"""
