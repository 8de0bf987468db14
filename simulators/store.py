"""The simulators' database adapter: runs and their ground truth (migration 0030)."""

from __future__ import annotations

import json
from typing import Any

import psycopg


def write_run_start(conn: psycopg.Connection, truth: dict[str, Any]) -> None:
    """Record a run and its planned events before the first message is published."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO sim_runs (run_id, scenario, source, seed, sim_start, sim_end, step_s, sensors)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                truth["run_id"],
                truth["scenario"],
                truth.get("source") or "",
                truth["seed"],
                truth["start"],
                truth["end"],
                truth["step_s"],
                truth["sensors"],
            ),
        )
        _write_events(conn, truth)
        write_works(conn, truth.get("works", ()))


def write_works(conn: psycopg.Connection, works: Any) -> list[int]:
    """A run's planned operations (``ScenarioRun.works``) into the works calendar, recorded
    by the simulator as an operator would before starting; returns their ids."""
    if not works:
        return []
    from datetime import datetime

    from alerts.api import add_work

    return [
        add_work(
            conn,
            kind=w["kind"],
            utility=w["utility"],
            starts_at=datetime.fromisoformat(w["starts_at"]),
            ends_at=datetime.fromisoformat(w["ends_at"]),
            description=w["description"],
            recorded_by="simulator",
            area_ids=w["area_ids"],
            asset_ids=w["asset_ids"],
        )
        for w in works
    ]


def write_run_end(conn: psycopg.Connection, truth: dict[str, Any]) -> None:
    """Replace the run's events with what happened (affected sensors) and close the run."""
    with conn.transaction():
        conn.execute("DELETE FROM sim_ground_truth WHERE run_id = %s", (truth["run_id"],))
        _write_events(conn, truth)
        conn.execute(
            "UPDATE sim_runs SET messages = %s, finished_at = now() WHERE run_id = %s",
            (truth.get("messages"), truth["run_id"]),
        )


def _write_events(conn: psycopg.Connection, truth: dict[str, Any]) -> None:
    for e in truth["events"]:
        conn.execute(
            """
            INSERT INTO sim_ground_truth (run_id, event_id, kind, type, network, element,
                                          starts_at, ends_at, geom, affected_sensors, params)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s,
                    CASE WHEN %s::float8 IS NULL THEN NULL
                         ELSE ST_SetSRID(ST_MakePoint(%s, %s), 4326) END,
                    %s, %s::jsonb)
            """,
            (
                truth["run_id"],
                e["event_id"],
                e["kind"],
                e["type"],
                e["network"],
                e["element"],
                e["start"],
                e["end"],
                e["lon"],
                e["lon"],
                e["lat"],
                e["affected_sensors"],
                json.dumps(e["params"]),
            ),
        )


def read_ground_truth(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        """
        SELECT event_id, kind, type, network, element, starts_at, ends_at,
               ST_X(geom), ST_Y(geom), affected_sensors, params
        FROM sim_ground_truth WHERE run_id = %s ORDER BY event_id
        """,
        (run_id,),
    ).fetchall()
    keys = [
        "event_id",
        "kind",
        "type",
        "network",
        "element",
        "starts_at",
        "ends_at",
        "lon",
        "lat",
        "affected_sensors",
        "params",
    ]
    return [dict(zip(keys, r, strict=True)) for r in rows]


def read_water_layers(
    conn: psycopg.Connection,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The GIS water layers (migration 0050, owned by gis/) with EPSG:4544 coordinates."""
    node_keys = ("node_id", "kind", "elevation_m", "base_demand_lps", "x_m", "y_m")
    nodes = [
        dict(zip(node_keys, r, strict=True))
        for r in conn.execute(
            "SELECT node_id, kind, elevation_m, base_demand_lps, ST_X(geom_m), ST_Y(geom_m)"
            " FROM water_nodes ORDER BY node_id"
        )
    ]
    pipe_keys = (
        "pipe_id",
        "from_node",
        "to_node",
        "diameter_mm",
        "length_m",
        "roughness",
        "status",
    )
    pipes = [
        dict(zip(pipe_keys, r, strict=True))
        for r in conn.execute(
            "SELECT pipe_id, from_node, to_node, diameter_mm, length_m, roughness, status"
            " FROM water_pipes ORDER BY pipe_id"
        )
    ]
    return nodes, pipes


def write_asset_limits(
    conn: psycopg.Connection,
    limits: dict[str, dict[str, tuple[float | None, float | None, str]]],
) -> int:
    """The simulated assets' own alarm limits (World.asset_limits) as per-sensor overrides
    (alerts' ``sensor_limit_overrides``), so that the alert engine judges each sensor against
    the rating of what it watches, as it would with a utility's asset register. The deadband
    stays the sensor type's. Returns how many were written."""
    from alerts.api import write_limit_override

    n = 0
    for sensor_id, per in limits.items():
        for quantity, (low, high, why) in per.items():
            row = conn.execute(
                "SELECT q.deadband FROM sensors s JOIN sensor_type_quantities q"
                " ON q.type_id = s.sensor_type WHERE s.sensor_id = %s AND q.quantity = %s",
                (sensor_id, quantity),
            ).fetchone()
            if row is None:
                continue
            write_limit_override(
                conn, "simulator", sensor_id, quantity, low, high, float(row[0]), why
            )
            n += 1
    return n


def write_metered_areas(
    conn: psycopg.Connection,
    areas: dict[str, tuple[str, list[tuple[str, int]], list[str]]],
    members: list[str],
) -> int:
    """The simulated networks' metered areas (World.metered_areas) for the alert engine's water
    balance and topology grouping (alerts' ``metered_areas``), as a utility registers its DMAs;
    ``members``: the sensors on the network (a scenario has one water network). Returns how
    many areas."""
    from alerts.api import write_metered_area

    for area_id, (name, meters, storage) in areas.items():
        write_metered_area(
            conn, "simulator", area_id, name, meters, members=members, storage=storage
        )
    return len(areas)
