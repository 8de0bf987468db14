"""One snapshot of every sensor's state, as columns, and the pure aggregations the pages need
(points in view, grid cells, per-district and per-utility counts).

The state query is the expensive part at city scale (about 0.25 s for 50,000 sensors), so each
dashboard process reads the snapshot once and every page and client shares it for a couple of
seconds, instead of running it three or four times per refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from dashboards.model import (
    NOT_REPORTING,
    UTILITIES,
    District,
    DistrictSummary,
    GridCell,
    SensorPoint,
    UtilityFigures,
    choose_grid_cell_deg,
    worst_severity,
)

Bbox = tuple[float, float, float, float]  # lon0, lat0, lon1, lat1 [degrees]


@dataclass(frozen=True, eq=False)
class SensorStates:
    ids: list[str]
    names: list[str]
    sensor_types: list[str]
    last_ts: list[datetime | None]
    utility: np.ndarray  # str
    district: np.ndarray  # int64, -1 where unknown
    lon: np.ndarray  # float64 [degrees]
    lat: np.ndarray
    state: np.ndarray  # str, one of SENSOR_STATES

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence]) -> SensorStates:
        """Rows of (sensor_id, name, utility, sensor_type, district, lon, lat, state, last_ts)."""
        cols = list(zip(*rows, strict=True)) if rows else [()] * 9
        return cls(
            ids=list(cols[0]),
            names=list(cols[1]),
            sensor_types=list(cols[3]),
            last_ts=list(cols[8]),
            utility=np.array(cols[2], dtype="U5"),
            district=np.array([-1 if d is None else d for d in cols[4]], dtype=np.int64),
            lon=np.array(cols[5], dtype=np.float64),
            lat=np.array(cols[6], dtype=np.float64),
            state=np.array(cols[7], dtype="U6"),
        )


def _mask(
    s: SensorStates,
    utilities: Sequence[str] | None = None,
    bbox: Bbox | None = None,
    states: Sequence[str] | None = None,
) -> np.ndarray:
    m = np.ones(len(s), dtype=bool)
    if utilities is not None:
        m &= np.isin(s.utility, list(utilities))
    if bbox is not None:
        m &= (s.lon >= bbox[0]) & (s.lon <= bbox[2]) & (s.lat >= bbox[1]) & (s.lat <= bbox[3])
    if states is not None:
        m &= np.isin(s.state, list(states))
    return m


def select_points(
    s: SensorStates,
    *,
    utilities: Sequence[str] | None = None,
    bbox: Bbox | None = None,
    states: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[SensorPoint]:
    """Sensors matching the filters, in id order, at most ``limit``."""
    idx = np.flatnonzero(_mask(s, utilities, bbox, states))
    if limit is not None:
        idx = idx[:limit]
    return [
        SensorPoint(
            s.ids[i],
            s.names[i],
            str(s.utility[i]),
            s.sensor_types[i],
            int(s.district[i]) if s.district[i] >= 0 else None,
            float(s.lon[i]),
            float(s.lat[i]),
            str(s.state[i]),
            s.last_ts[i],
        )
        for i in idx
    ]


def grid_cells(
    s: SensorStates,
    *,
    cell_deg: float,
    utilities: Sequence[str] | None = None,
    bbox: Bbox | None = None,
) -> list[GridCell]:
    """Sensors counted by state on a lon/lat grid of ``cell_deg`` [degrees]."""
    m = _mask(s, utilities, bbox)
    if not m.any():
        return []
    ix = np.floor(s.lon[m] / cell_deg).astype(np.int64)
    iy = np.floor(s.lat[m] / cell_deg).astype(np.int64)
    keys, inverse = np.unique(np.stack([ix, iy], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = len(keys)
    state = s.state[m]
    total = np.bincount(inverse, minlength=n)
    by_state = {
        st: np.bincount(inverse, weights=(state == st), minlength=n).astype(np.int64)
        for st in ("alarm", "lost", "silent", "nodata")
    }
    return [
        GridCell(
            float((keys[k, 0] + 0.5) * cell_deg),
            float((keys[k, 1] + 0.5) * cell_deg),
            int(total[k]),
            int(by_state["alarm"][k]),
            int(by_state["silent"][k] + by_state["lost"][k]),
            int(by_state["nodata"][k]),
            int(by_state["lost"][k]),
        )
        for k in range(n)
    ]


def city_markers(
    s: SensorStates, *, points_max: int = 5000, city_span_deg: float = 2.0
) -> tuple[list[SensorPoint], list[GridCell]]:
    """What a whole-city map draws: every sensor while there are at most ``points_max``, grid
    cells beyond (50,000 SVG markers would stall the browser)."""
    if len(s) <= points_max:
        return select_points(s), []
    return [], grid_cells(s, cell_deg=choose_grid_cell_deg(city_span_deg))


def district_summaries(
    s: SensorStates,
    districts: Sequence[District],
    alerts_by_district: dict[int, tuple[int, list[str]]],
) -> list[DistrictSummary]:
    """Per district (in the given order): sensors by state, open alerts, worst severity."""
    out = []
    for d in districts:
        m = s.district == d.adcode
        st = s.state[m]
        n_alerts, severities = alerts_by_district.get(d.adcode, (0, []))
        out.append(
            DistrictSummary(
                adcode=d.adcode,
                name_zh=d.name_zh,
                name_en=d.name_en,
                sensors=int(m.sum()),
                alarm=int((st == "alarm").sum()),
                silent=int(np.isin(st, ["silent", "lost"]).sum()),
                nodata=int((st == "nodata").sum()),
                open_alerts=n_alerts,
                worst_severity=worst_severity(list(severities)),
                lost=int((st == "lost").sum()),
            )
        )
    return out


def utility_figures(
    s: SensorStates,
    alerts_by_utility: dict[str, list[tuple[str, int]]],
    completeness: dict[str, float],
    interruptions: dict[str, tuple[int, int, int]],
) -> list[UtilityFigures]:
    """Per utility: sensors by state (reporting + silent + no data = sensors: one definition
    of online, ``model.NOT_REPORTING``), open alerts by severity, the last 60 minutes'
    completeness and customers without supply with the open incidents they belong to
    (``interruptions``: open incidents, customers, people; none open: 0)."""
    out = []
    for u in UTILITIES:
        st = s.state[s.utility == u]
        out.append(
            UtilityFigures(
                utility=u,
                sensors=len(st),
                reporting=int(np.isin(st, ["normal", "alarm"]).sum()),
                silent=int(np.isin(st, ["silent", "lost"]).sum()),
                nodata=int((st == "nodata").sum()),
                lost=int((st == "lost").sum()),
                open_by_severity=tuple(sorted(alerts_by_utility.get(u, []))),
                completeness=completeness.get(u),
                customers_cut=interruptions.get(u, (0, 0, 0))[1],
                incidents_open=interruptions.get(u, (0, 0, 0))[0],
            )
        )
    return out


def not_reporting_by(s: SensorStates, key: str) -> dict[object, int]:
    """Sensors not reporting (``model.NOT_REPORTING``: silent, lost or never heard from) per
    ``utility`` or ``district`` (adcode, -1 unknown): the trust page's silent column, counted
    from the same snapshot as the wall's online figure."""
    groups = s.utility if key == "utility" else s.district
    mask = np.isin(s.state, list(NOT_REPORTING))
    values, counts = np.unique(groups[mask], return_counts=True)
    return {
        (str(v) if key == "utility" else int(v)): int(c)
        for v, c in zip(values, counts, strict=True)
    }
