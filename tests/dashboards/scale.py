"""City-scale synthetic data for the dashboard (the 50,000-sensor map test and
benchmarks/dash_bench.py): sensors scattered inside the real districts, latest values, alerts,
and optionally minutes of readings with their 1-minute and 1-hour rollups. All in SQL, bounded
by its arguments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from gis.postgis import write_districts
from tests.conftest import ROOT

TYPES = (
    ("water", "water_pressure", "pressure", 300.0),
    ("power", "power_bus", "voltage", 10_000.0),
    ("gas", "gas_pressure", "pressure", 150.0),
)


def load_scale_sensors(
    conn: psycopg.Connection,
    n_sensors: int,
    *,
    silent_fraction: float = 0.02,
    alarm_count: int = 25,
    seed: float = 0.42,
) -> None:
    """Districts and ``n_sensors`` sensors (a third per utility) spread over the districts in
    proportion to their area, each with a latest value; a few silent, ``alarm_count`` alarms."""
    write_districts(
        conn, json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text("utf-8"))
    )
    with conn.transaction():
        conn.execute("SELECT setseed(%s)", (seed,))
        conn.execute(
            """
            WITH share AS (
                SELECT adcode, geom, ceil(%(n)s * ST_Area(geom) / sum(ST_Area(geom)) OVER ())::int AS k
                FROM districts),
            pts AS (
                SELECT adcode, (ST_Dump(ST_GeneratePoints(geom, k, 7))).geom AS g FROM share),
            numbered AS (
                SELECT adcode, g, row_number() OVER (ORDER BY adcode, ST_X(g)) AS i FROM pts)
            INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom,
                                 created_at)
            SELECT 'bench-' || i, (ARRAY['water','power','gas'])[1 + i %% 3],
                   (ARRAY['water_pressure','power_bus','gas_pressure'])[1 + i %% 3],
                   '规模测试传感器' || i, adcode, g, now() - interval '60 days'
            FROM numbered WHERE i <= %(n)s
            """,
            {"n": n_sensors},
        )
        conn.execute(
            """
            INSERT INTO sensor_latest (sensor_id, quantity, ts, value, seq, received_at)
            SELECT sensor_id, CASE utility WHEN 'power' THEN 'voltage' ELSE 'pressure' END,
                   CASE WHEN random() < %(silent)s THEN now() - interval '3 hours'
                        ELSE now() - interval '30 seconds' END,
                   300, 1, now()
            FROM sensors WHERE sensor_id LIKE 'bench-%%'
            """,
            {"silent": silent_fraction},
        )
        conn.execute(
            """
            INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,
                                limit_value, message_zh, message_en)
            SELECT sensor_id, utility, 'pressure', 'low',
                   (ARRAY['critical','major','warning'])[1 + (row_number() OVER ()) %% 3],
                   now() - (random() * interval '5 hours'), 150, 200,
                   '压力过低（规模测试）', 'Pressure low (scale test)'
            FROM sensors WHERE sensor_id LIKE 'bench-%%' ORDER BY random() LIMIT %(k)s
            """,
            {"k": alarm_count},
        )


def load_scale_readings(
    conn: psycopg.Connection,
    *,
    sensors: int,
    days: float,
    step_s: int = 60,
    now: datetime | None = None,
    log=print,
) -> int:
    """``days`` of readings every ``step_s`` [s] for the first ``sensors`` scale sensors, in
    day-sized transactions, then their 1-minute and 1-hour rollups where those are plain tables.
    Returns the number of readings written. 10,000 sensors x 30 days x 1 min is 432 million
    rows (tens of GB): keep ``sensors`` x ``days`` within what the disk and the time allow."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = (now - timedelta(days=days)).replace(minute=0)  # whole hours per transaction
    conn.execute("SELECT cityops_ensure_partitions(%s, %s)", (start, now + timedelta(days=1)))
    conn.commit()
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT sensor_id FROM sensors WHERE sensor_id LIKE 'bench-%%'"
            " ORDER BY sensor_id LIMIT %s",
            (sensors,),
        )
    ]
    plain = conn.execute(
        "SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass('readings_1m')"
    ).fetchone()
    total = 0
    t0 = start
    while t0 < now:
        t1 = min(now, t0 + timedelta(days=1))
        with conn.transaction():
            cur = conn.execute(
                """
                INSERT INTO readings (sensor_id, quantity, ts, value, seq, received_at)
                SELECT s.sensor_id, CASE s.utility WHEN 'power' THEN 'voltage' ELSE 'pressure' END,
                       ts, 300 + 20 * sin(extract(epoch FROM ts) / 3600.0 + length(s.sensor_id)),
                       (extract(epoch FROM ts) / %(step)s)::bigint, ts + interval '1 second'
                FROM sensors s JOIN unnest(%(ids)s::text[]) AS u(id) ON u.id = s.sensor_id,
                     generate_series(%(t0)s, %(t1)s - interval '1 second',
                                     make_interval(secs => %(step)s)) ts
                ON CONFLICT DO NOTHING
                """,
                {"t0": t0, "t1": t1, "step": step_s, "ids": ids},
            )
            total += cur.rowcount
            if plain and plain[0]:
                for table, width in (("readings_1m", "minute"), ("readings_1h", "hour")):
                    conn.execute(
                        f"""
                        INSERT INTO {table} (sensor_id, quantity, bucket, value_min, value_max,
                                             value_sum, n, value_last, last_ts)
                        SELECT sensor_id, quantity, date_trunc('{width}', ts), min(value),
                               max(value), sum(value), count(*),
                               (array_agg(value ORDER BY ts DESC))[1], max(ts)
                        FROM readings WHERE sensor_id = ANY(%(ids)s)
                          AND ts >= %(t0)s AND ts < %(t1)s
                        GROUP BY 1, 2, 3 ON CONFLICT DO NOTHING
                        """,  # noqa: S608 - table and width are constants of this function
                        {"ids": ids, "t0": t0, "t1": t1},
                    )
        log(f"  readings up to {t1:%Y-%m-%d %H:%M}: {total:,}")
        t0 = t1
    return total
