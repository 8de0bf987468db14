"""What ``cityops evaluate`` scores (alerts/evaluation.py): a simulator run (``sim_runs``), its
ground truth (``sim_ground_truth``, both written by the simulators) and the incidents raised
during it. Read-only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from alerts.evaluation import LATE_S, DetectionRecord, TruthEvent
from alerts.stores.times import us_from_ts


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    scenario: str
    sensors: int
    start_us: int
    end_us: int


def read_evaluation_input(
    conn: psycopg.Connection, run_id: str, sensor_ids: Sequence[str] | None = None
) -> tuple[RunInfo, list[TruthEvent], list[DetectionRecord]]:
    """A simulator run, its ground truth, and the incidents raised during it (by reading time);
    ``sensor_ids``: only incidents with an alert of one of these sensors (the run's own, when
    other runs of the same dates share the database)."""
    run = conn.execute(
        "SELECT run_id, scenario, sensors, sim_start, sim_end FROM sim_runs WHERE run_id = %s",
        (run_id,),
    ).fetchone()
    if run is None:
        raise LookupError(f"no simulator run {run_id!r}")
    info = RunInfo(run[0], run[1], int(run[2]), us_from_ts(run[3]), us_from_ts(run[4]))
    truth = [
        TruthEvent(
            event_id,
            kind,
            ttype,
            network,
            us_from_ts(starts),
            us_from_ts(ends) if ends else None,
            lon,
            lat,
            frozenset(affected),
            element,
        )
        for event_id, kind, ttype, network, starts, ends, lon, lat, affected, element in conn.execute(
            "SELECT event_id, kind, type, network, starts_at, ends_at, ST_X(geom), ST_Y(geom),"
            " affected_sensors, element FROM sim_ground_truth WHERE run_id = %s ORDER BY event_id",
            (run_id,),
        )
    ]
    only = None if sensor_ids is None else list(sensor_ids)
    # a water incident placed on the network model (it has candidates) is scored at its best
    # candidate pipe's midpoint; one placed otherwise (the nearest pipe) at its centre
    detections = [
        DetectionRecord(
            r[0],
            r[1],
            r[2],
            us_from_ts(r[3]),
            r[4],
            r[5],
            frozenset(r[6]),
            r[7] if cands else None,
            r[8] if cands else None,
            cands,
        )
        for r in conn.execute(
            "SELECT i.incident_id, i.utility, i.kind, i.opened_at, ST_X(i.centre), ST_Y(i.centre),"
            " array_agg(DISTINCT a.sensor_id),"
            " ST_X((array_agg(p.mid))[1]), ST_Y((array_agg(p.mid))[1]),"
            " CASE WHEN jsonb_typeof(i.affected->'candidates') = 'array'"
            "   THEN i.affected->'candidates' END"
            " FROM incidents i"
            " JOIN alerts a ON a.incident_id = i.incident_id"
            " LEFT JOIN LATERAL (SELECT ST_LineInterpolatePoint(w.geom, 0.5) AS mid"
            "   FROM water_pipes w WHERE i.utility = 'water' AND w.pipe_id = i.likely_location"
            "   UNION ALL SELECT ST_LineInterpolatePoint(l.geom, 0.5) FROM power_lines l"
            "   WHERE i.utility = 'power' AND l.line_id = i.likely_location) p"
            "   ON true"
            " WHERE i.opened_at BETWEEN %s AND %s"
            " AND (%s::text[] IS NULL OR EXISTS (SELECT 1 FROM alerts m"
            "      WHERE m.incident_id = i.incident_id AND m.sensor_id = ANY(%s::text[])))"
            " GROUP BY i.incident_id ORDER BY i.incident_id",
            (run[3], run[4] + timedelta(seconds=LATE_S), only, only),
        )
        for cands in [_candidates(r[9])]
    ]
    return info, truth, detections


def _candidates(doc: object) -> tuple[str, ...]:
    if not isinstance(doc, list):
        return ()
    return tuple(str(c["pipe"]) for c in doc if isinstance(c, dict) and "pipe" in c)
