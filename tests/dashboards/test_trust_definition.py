"""One definition of the data-trust figures (issue 15 item 8, decision 0016), on a real
database with known readings: ``data_trust`` (migration 0073) counts expected readings at each
sensor's declared interval, does not count backfilled history as late, and the wall and the
data-trust page show the same completeness through their own code paths; customers without
supply belong to open incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dash import html

from cityops.kernel.settings import Settings
from dashboards import queries
from dashboards.context import AppContext
from dashboards.model import percent
from dashboards.pages import trust, wall
from dashboards.queries import Reader
from ingestion.trust import QUALITY_HISTORY

WATER, GAS = "wp-t-1", "gp-t-1"


def _sensors(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom, created_at) VALUES"
        " (%s, 'water', 'water_pressure', '测试压力', ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326),"
        "  now() - interval '1 day'),"
        " (%s, 'gas', 'gas_pressure', '测试燃气', ST_SetSRID(ST_MakePoint(104.07, 30.67), 4326),"
        "  now() - interval '1 day')",
        (WATER, GAS),
    )
    # a declared interval of 5 minutes: 12 readings an hour are expected, not 60
    conn.execute("UPDATE sensor_types SET expected_interval_s = 300 WHERE type_id = 'gas_pressure'")


def _readings(conn: psycopg.Connection, t0: datetime) -> None:
    """In the hour before ``t0``: water every minute but 15 missing (45 of 60), of which 5
    arrived late (delivered 10 min after their time) and 12 were loaded as history (flagged,
    a day after their time); gas every 5 minutes, all 12 on time."""
    rows = []
    for k in range(60):
        if k % 4 == 3:
            continue  # 15 missing
        ts = t0 - timedelta(seconds=60 * k + 30)
        if k in (0, 1, 2, 4, 5):
            rows.append((WATER, "pressure", ts, k, 0, ts + timedelta(minutes=10)))  # late
        elif k >= 44:
            rows.append((WATER, "pressure", ts, k, QUALITY_HISTORY, ts + timedelta(days=1)))
        else:
            rows.append((WATER, "pressure", ts, k, 0, ts + timedelta(seconds=1)))
    for k in range(12):
        ts = t0 - timedelta(seconds=300 * k + 30)
        rows.append((GAS, "pressure", ts, k, 0, ts + timedelta(seconds=2)))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (sensor_id, quantity, ts, value, seq, quality, received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(s, q, ts, 200 + n, n + 1, qual, rcv) for s, q, ts, n, qual, rcv in rows],
        )


def _context(db_url: str, now: datetime) -> AppContext:
    settings = Settings(database_url=db_url)
    return AppContext(
        settings=settings,
        reader=Reader(db_url),
        writer=Reader(db_url, read_only=False, max_idle=1),
        clock=lambda: now,
    )


def test_data_trust_counts_per_declared_interval_and_backfill_is_not_late(db_url: str) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(db_url) as conn:
        _sensors(conn)
        _readings(conn, t0)
        rows = conn.execute(
            "SELECT sensor_id, expected, received, late, backfilled, counted, completeness"
            " FROM data_trust(%s, %s) WHERE sensor_id IN (%s, %s) ORDER BY sensor_id",
            (t0 - timedelta(hours=1), t0, GAS, WATER),
        ).fetchall()
    assert rows == [
        (GAS, 12, 12, 0, 0, 12, 1.0),  # 12 expected at its 5-minute interval, all on time
        (WATER, 60, 45, 5, 12, 45, 0.75),  # the 12 backfilled are received, not late
    ]


def _text(node: object) -> str:
    if isinstance(node, str):
        return node
    children = getattr(node, "children", None)
    if children is None:
        return ""
    if isinstance(children, list | tuple):
        return "".join(_text(c) for c in children)
    return _text(children)


def _find(node: object, match) -> list:
    out = [node] if match(node) else []
    children = getattr(node, "children", None)
    for c in children if isinstance(children, list | tuple) else [children] if children else []:
        out += _find(c, match)
    return out


def test_the_wall_and_the_trust_page_show_the_same_completeness(db_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM sensors")  # only the two known sensors count
        _sensors(conn)
        _readings(conn, now)
    # two contexts, two caches: each page computes its own figure
    wall_ctx, trust_ctx = _context(db_url, now), _context(db_url, now)
    data = wall.read_wall(wall_ctx)
    water = next(f for f in data.figures if f.utility == "water")
    card = wall.kpi_card("zh", water)
    (value,) = _find(card[1], lambda n: getattr(n, "data-kpi", None) == "kpi.completeness")
    wall_text = _text(value)

    table = trust.refresh(trust_ctx, 0, "zh")[0]
    (row,) = _find(
        table, lambda n: isinstance(n, html.Tr) and getattr(n, "data-group", None) == "water"
    )
    trust_text = _text(row.children[1])
    assert wall_text == trust_text
    # 45 of the 60 minutes (the window's start may cut the oldest expected one)
    assert wall_text in (percent(45 / 60), percent(45 / 59), percent(44 / 59))
    gas = next(f for f in data.figures if f.utility == "gas")
    assert gas.completeness == pytest.approx(1.0)
    with psycopg.connect(db_url) as conn:
        assert queries.fetch_completeness(conn, since=queries.trust_since(now))["water"] == (
            pytest.approx(water.completeness)
        )


def _incident(conn: psycopg.Connection, utility: str, state: str, customers: int) -> int:
    row = conn.execute(
        "INSERT INTO incidents (utility, kind, severity, state, opened_at, last_alert_at, centre,"
        " affected, explanation_zh, explanation_en) VALUES (%s, 'burst', 'major', %s,"
        " now() - interval '10 minutes', now() - interval '5 minutes',"
        " ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326),"
        " jsonb_build_object('customers_without_supply', %s::int,"
        "                    'population_without_supply', 3 * %s::int), '测试', 'test')"
        " RETURNING incident_id",
        (utility, state, customers, customers),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _alert(
    conn: psycopg.Connection, sensor: str, utility: str, incident: int, cleared: bool
) -> None:
    conn.execute(
        "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
        " limit_value, message_zh, message_en, incident_id, cleared_at)"
        " VALUES (%s, %s, 'pressure', 'threshold_low', 'major', now() - interval '6 minutes',"
        " 100, 200, '压力低', 'pressure low', %s,"
        " CASE WHEN %s THEN now() - interval '1 minute' END)",
        (sensor, utility, incident, cleared),
    )


def test_customers_without_supply_belong_to_open_incidents(db_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM sensors")
        _sensors(conn)
    ctx = _context(db_url, now)
    figures = {f.utility: f for f in wall.read_wall(ctx).figures}
    assert all(f.customers_cut == 0 and f.incidents_open == 0 for f in figures.values())
    with psycopg.connect(db_url) as conn:
        _alert(conn, WATER, "water", _incident(conn, "water", "open", 145), cleared=False)
        # open, but every alert cleared: supply is back while it waits out its quiet window
        _alert(conn, GAS, "gas", _incident(conn, "gas", "open", 50), cleared=True)
        _incident(conn, "gas", "resolved", 30)
        _incident(conn, "power", "open", 42)  # no member alert yet: nothing says it is over
    figures = {f.utility: f for f in wall.read_wall(_context(db_url, now)).figures}
    assert (figures["water"].customers_cut, figures["water"].incidents_open) == (145, 1)
    assert (figures["gas"].customers_cut, figures["gas"].incidents_open) == (0, 1)
    assert (figures["power"].customers_cut, figures["power"].incidents_open) == (42, 1)
    card = wall.kpi_card("zh", figures["water"])
    (value,) = _find(card[1], lambda n: getattr(n, "data-kpi", None) == "kpi.outages")
    assert _text(value) == "145" and "1 起" in _text(card[1])  # the open incidents named


def test_history_loaded_with_readings_import_is_backfilled_not_late(db_url: str) -> None:
    """The real door for history (ingestion.history, `cityops readings import`): an hour of a
    week ago, stored today, is complete and not late; the same hour delivered live that late
    would be all late."""
    from ingestion.history import import_history

    with psycopg.connect(db_url) as conn:
        _sensors(conn)
    t0 = (datetime.now(UTC) - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    lines = ["sensor_id,quantity,ts,value,seq"]
    lines += [
        f"{WATER},pressure,{(t0 - timedelta(minutes=60 - k)).isoformat()},350,{k + 1}"
        for k in range(60)
    ]
    report = import_history(db_url, "\n".join(lines) + "\n", retention_days=400)
    assert report.stored == 60
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT expected, received, late, backfilled, completeness FROM data_trust(%s, %s)"
            " WHERE sensor_id = %s",
            (t0 - timedelta(hours=1), t0, WATER),
        ).fetchone()
    assert row == (60, 60, 0, 60, 1.0)


def test_the_shared_rows_are_refreshed_on_a_thread_not_in_a_page_refresh(db_url: str) -> None:
    """Once read, a page gets the previous rows at once and the next ones arrive from a thread
    (a wall refresh never waits for data_trust)."""
    from tests.waiting import wait_for

    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM sensors")
        _sensors(conn)
    reader = Reader(db_url)
    shared = queries.TrustRows(reader, ttl_s=0.0)
    with reader.connection() as conn:
        first = shared.get(conn, now)
    assert {r[0]: r[2] for r in first} == {"water": 0, "gas": 0}  # nothing received yet
    with psycopg.connect(db_url) as conn:
        _readings(conn, datetime.now(UTC))
    with reader.connection() as conn:
        assert shared.get(conn, now) is first  # the previous rows, a refresh started

        def received() -> dict:
            return {r[0]: r[2] for r in shared.get(conn, now)}

        wait_for(lambda: received() == {"water": 45, "gas": 12}, 10, what="the refreshed rows")


def test_online_and_silent_are_one_definition_on_the_wall_and_the_trust_page(db_url: str) -> None:
    """Issue 16: a sensor that stopped and got its silent alert counted as "online" (its alert
    made it an alarm) and was missing from the trust page's silent list. Three water sensors:
    one fresh, one silent for 10 minutes with its silent alert open, one never heard from."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM sensors")
        for sid in ("wp-fresh", "wp-stopped", "wp-never"):
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode,"
                " geom) VALUES (%s, 'water', 'water_pressure', %s, 510104,"
                " ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (sid, sid),
            )
        conn.execute(
            "INSERT INTO sensor_latest (sensor_id, quantity, ts, value, seq, received_at) VALUES"
            " ('wp-fresh', 'pressure', now() - interval '20 seconds', 300, 1, now()),"
            " ('wp-stopped', 'pressure', now() - interval '10 minutes', 300, 1, now())"
        )
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wp-stopped', 'water', 'pressure',"
            " 'silent', 'warning', now() - interval '7 minutes', 420, 180, '无数据', 'silent')"
        )
    water = next(f for f in wall.read_wall(_context(db_url, now)).figures if f.utility == "water")
    assert (water.sensors, water.reporting, water.not_reporting) == (3, 1, 2)
    card = wall.kpi_card("zh", water)
    (online,) = _find(card[1], lambda n: getattr(n, "data-kpi", None) == "kpi.reporting")
    assert _text(online) == percent(1 / 3)  # was 66.7 %: the silent alert made it an alarm
    out = trust.refresh(_context(db_url, now), 0, "zh")
    (row,) = _find(out[0], lambda n: getattr(n, "data-group", None) == "water")
    assert _text(row.children[-1]) == "2"  # the trust page's not-reporting column
    listed = _find(out[4], lambda n: getattr(n, "data-sensor", None) is not None)
    assert sorted(getattr(n, "data-sensor") for n in listed) == ["wp-never", "wp-stopped"]
