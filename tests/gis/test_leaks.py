"""Leak and closure localisation on the hydraulic model (gis/leaks.py): the physics is the
real EPANET solution (wntr) with the leak or the closure, and the ranking must find it."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from gis import leaks
from simulators.water import emitter_coefficient, library_inp


@pytest.fixture(scope="module")
def net3():
    import wntr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wntr.network.WaterNetworkModel(str(library_inp("Net3")))


def _observe(wn, changed, clock_s: float, sensors: list[str]) -> list[leaks.Observation]:
    h0, _ = leaks.solve_base(wn, clock_s)
    h1, _ = leaks.solve_base(changed, clock_s)
    return [leaks.Observation("pressure", s, h1[s] - h0[s]) for s in sensors]


def _sensors(wn, n: int = 25, seed: int = 0) -> list[str]:
    return [
        str(s) for s in np.random.default_rng(seed).choice(wn.junction_name_list, n, replace=False)
    ]


def _with_leak(wn, pipe: str, area_cm2: float):
    import wntr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = wntr.morph.split_pipe(copy.deepcopy(wn), pipe, f"{pipe}-b", f"{pipe}-leak")
    # the simulator's coefficient is for an LPS input file; the wntr model is SI (m3/s)
    m.get_node(f"{pipe}-leak").emitter_coefficient = emitter_coefficient(area_cm2) / 1000.0
    return m


def test_synthetic_line_leak_is_found_at_its_node():
    # a chain r - a - b - c - d from one reservoir: a leak at c lowers c most, then d, b, a
    names = ["r", "a", "b", "c", "d"]
    links = [
        ("p1", "pipe", "r", "a"),
        ("p2", "pipe", "a", "b"),
        ("p3", "pipe", "b", "c"),
        ("p4", "pipe", "c", "d"),
    ]
    st = leaks.linearise(names, ["r"], links, np.ones(4), np.full(4, 0.01))
    dh = -st.solve(np.eye(4)[st.node_index["c"]]) * 0.02  # a 20 L/s leak at c
    obs = [leaks.Observation("pressure", n, float(dh[st.node_index[n]])) for n in "abd"]
    ranked = leaks.rank(st, obs, closures=False)
    # c has no sensor and d's pressure equals c's on a dead end: the pipe into c or on to d
    assert ranked[0].pipe in ("p3", "p4")
    assert ranked[0].kind == "leak" and ranked[0].size > 0
    assert ranked[-1].pipe == "p1"


@pytest.mark.parametrize("pipe", ["101", "121", "271", "305"])
def test_net3_burst_in_top5(net3, pipe):
    clock = 2 * 3600.0
    st = leaks.model_state(net3, clock)
    obs = _observe(net3, _with_leak(net3, pipe, 10.0), clock, _sensors(net3))
    ranked = leaks.rank(st, obs, top=5)
    assert pipe in [c.pipe for c in ranked], ranked
    assert ranked[0].kind == "leak"
    assert 0.0 < ranked[0].score <= 1.0


def test_net3_closure_is_told_from_a_leak(net3):
    import wntr

    clock = 15 * 3600.0
    st = leaks.model_state(net3, clock)
    closed = copy.deepcopy(net3)
    closed.get_link("189").initial_status = wntr.network.LinkStatus.Closed
    ranked = leaks.rank(st, _observe(net3, closed, clock, _sensors(net3)), top=5)
    assert ranked[0].pipe == "189" and ranked[0].kind == "closure"


def test_area_narrows_the_candidates(net3):
    clock = 2 * 3600.0
    st = leaks.model_state(net3, clock)
    obs = _observe(net3, _with_leak(net3, "121", 10.0), clock, _sensors(net3))
    area = {"119", "120", "121", "123"}
    for c in leaks.rank(st, obs, area_nodes=area, top=50):
        k = st.links.index(c.pipe)
        assert set(st.end_names[k]) & area


def test_search_area_covers_the_candidates(net3):
    from shapely.geometry import Point, shape

    st = leaks.model_state(net3, 0.0)
    obs = _observe(net3, _with_leak(net3, "121", 10.0), 0.0, _sensors(net3))
    ranked = leaks.rank(st, obs, top=5)
    poly = shape(leaks.search_area(st, ranked, buffer_m=1.0))
    for c in ranked:
        assert poly.contains(Point(leaks.pipe_midpoint(st, c.pipe)))


def test_flow_observations_place_a_leak_downstream_of_the_meter():
    # r - a - b, a - c: a meter on a-b sees more flow when b leaks, none when c leaks
    names = ["r", "a", "b", "c"]
    links = [("in", "pipe", "r", "a"), ("ab", "pipe", "a", "b"), ("ac", "pipe", "a", "c")]
    st = leaks.linearise(names, ["r"], links, np.ones(3), np.full(3, 0.01))
    obs = [leaks.Observation("flow", "ab", 0.005), leaks.Observation("flow", "ac", 0.0)]
    assert leaks.rank(st, obs, closures=False)[0].pipe == "ab"


def test_bad_input_is_refused(net3):
    st = leaks.model_state(net3, 0.0)
    with pytest.raises(leaks.LocaliseError, match="no observations"):
        leaks.rank(st, [])
    with pytest.raises(leaks.LocaliseError, match="no free node"):
        leaks.rank(st, [leaks.Observation("pressure", "nowhere", -1.0)])
    with pytest.raises(leaks.LocaliseError, match="no change"):
        leaks.rank(st, [leaks.Observation("pressure", "121", 0.0)])
    with pytest.raises(leaks.LocaliseError, match="unknown observation"):
        leaks.rank(st, [leaks.Observation("chlorine", "121", 1.0)])


def test_the_model_solves_where_the_working_directory_is_read_only() -> None:
    """The enricher runs as the stack's own user with the checkout as its working directory,
    which that user cannot write: EPANET's full solve wrote a scratch file there (error 305,
    every incident fell back to the nearest pipe). The solves (gis/hydraulics.py) write only in
    their own temporary directory."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from cityops.shell.stack import ensure_service_user

    root = Path(__file__).resolve().parents[2]
    user = ensure_service_user()  # ``cityops`` when the tests run as root, else ourselves
    with tempfile.TemporaryDirectory(prefix="cityops-ro-") as tmp:
        Path(tmp).chmod(0o755)
        ro, home = Path(tmp) / "checkout", Path(tmp) / "home"
        ro.mkdir(mode=0o555)
        home.mkdir(mode=0o777)
        home.chmod(0o777)
        code = (
            f"import sys; sys.path.insert(0, {str(root)!r})\n"
            "from gis import leaks\nfrom simulators.water import load_network\n"
            "from gis.epanet import simulate_day\n"
            "heads, flows = leaks.solve_base(load_network('Net3'), 7200.0)\n"
            "pressure, _ = simulate_day(load_network('Net3'), [1.0] * 24)\n"
            "print(len(heads), len(flows), len(pressure))\n"
        )
        cmd = [sys.executable, "-c", code]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "MPLCONFIGDIR": str(home),
        }
        out = subprocess.run(cmd, cwd=ro, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Net3's nodes and links solved, and a day of it (`cityops sensors limits --from-model`)
    assert out.stdout.split() == ["97", "119", "24"]
