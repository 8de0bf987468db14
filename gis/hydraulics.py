"""EPANET runs of a wntr model that write nothing outside their own temporary directory.

wntr's ``EpanetSimulator`` solves with ``ENsolveH``, which keeps a scratch hydraulics file named
``enXXXXXX`` in the process's working directory: a service running as its own user in a
checkout it cannot write gets EPANET error 305 (the enricher of a `cityops up` stack placed no
incident on the model because of it). Here the toolkit steps the hydraulics itself with no
hydraulics file (``ENinitH(0)``, ``ENrunH`` / ``ENnextH``), the model and its report in a
temporary directory."""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Hydraulics:
    """One row per reported time [s from the start]: pressure and head [m] per node, flow
    [m3/s] per link (positive from the start node to the end node)."""

    pressure: pd.DataFrame
    head: pd.DataFrame
    flowrate: pd.DataFrame


def run_hydraulics(
    wn, *, duration_s: int = 0, step_s: int = 3600, clock_s: float | None = None
) -> Hydraulics:
    """Solve ``wn`` (a copy: the caller's model is left as it is) from 0 to ``duration_s``,
    reporting every ``step_s``; ``clock_s``: the local time of day the run starts at (patterns
    and clock controls follow it), else the model's own."""
    import wntr
    from wntr.epanet import toolkit
    from wntr.epanet.util import EN

    m = copy.deepcopy(wn)
    m.options.time.duration = int(duration_s)
    m.options.time.hydraulic_timestep = int(step_s)
    m.options.time.report_timestep = int(step_s)
    if clock_s is not None:
        m.options.time.pattern_start = int(clock_s) % 86_400
        m.options.time.start_clocktime = int(clock_s) % 86_400
    nodes, links = list(m.node_name_list), list(m.link_name_list)
    times: list[int] = []
    rows: dict[str, list[list[float]]] = {"pressure": [], "head": [], "flow": []}
    with tempfile.TemporaryDirectory(prefix="cityops-hyd-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = f"{tmp}/model.inp"
        wntr.network.io.write_inpfile(m, inp, units="LPS")  # SI: metres and L/s
        en = toolkit.ENepanet(version=2.2)
        en.ENopen(inp, f"{tmp}/model.rpt", f"{tmp}/model.bin")
        try:
            ni = [en.ENgetnodeindex(n) for n in nodes]
            li = [en.ENgetlinkindex(k) for k in links]
            en.ENopenH()
            en.ENinitH(0)
            while True:
                t = int(en.ENrunH())
                # EPANET also stops between reports (tanks filling, controls): keep reports only
                if t % step_s == 0 and (not times or times[-1] != t):
                    times.append(t)
                    rows["pressure"].append([en.ENgetnodevalue(i, EN.PRESSURE) for i in ni])
                    rows["head"].append([en.ENgetnodevalue(i, EN.HEAD) for i in ni])
                    rows["flow"].append([en.ENgetlinkvalue(i, EN.FLOW) / 1000.0 for i in li])
                if en.ENnextH() <= 0:
                    break
            en.ENcloseH()
        finally:
            en.ENclose()
    return Hydraulics(
        pd.DataFrame(rows["pressure"], index=times, columns=nodes),
        pd.DataFrame(rows["head"], index=times, columns=nodes),
        pd.DataFrame(rows["flow"], index=times, columns=links),
    )
