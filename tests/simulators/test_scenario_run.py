"""Scenario runs: determinism, ground truth against what was published, the real broker and
database end to end, SenML batches and per-device identities."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from sensors.payload import PayloadError, TimeWindow, decode_message
from sensors.topics import parse_telemetry_topic, telemetry_topic
from simulators.devices import enrol_devices, make_credentials, write_credentials
from simulators.scenario import prepare_run, run_scenario
from simulators.spec import parse_scenario
from simulators.store import read_ground_truth
from tests.listening import drain, subscribe
from tests.waiting import wait_for

WIDE = TimeWindow(max_past_s=1e10, max_future_s=1e10)

WATER = """\
name: {name}
start: "2026-11-26T00:00:00+08:00"
duration: {duration}
step: 1m
seed: {seed}
id_prefix: {prefix}
encoding: {encoding}
batch_steps: {batch}
networks:
  water: {{model: Net3, anchor: [104.085, 30.64]}}
sensors:
  water: {{pressure: {n_pressure}, flow: ["103", "109"]}}
incidents:
  - {{network: water, type: burst, element: "101", at: 60m, duration: 60m, area_cm2: 30}}
faults:
  - {{type: dropout, count: 1, at: 30m, duration: 20m}}
  - {{type: stuck, count: 1, at: 20m, duration: 60m}}
  - {{type: duplicate, count: 1, at: 10m, duration: 10m}}
  - {{type: out_of_order, count: 1, at: 100m, duration: 10m, delay_steps: 2}}
  - {{type: clock_skew, count: 1, at: 0s, offset: 2m}}
  - {{type: malformed, count: 1, at: 140m, duration: 20m, probability: 1.0}}
"""


def water_scenario(
    *, seed=3, duration="3h", prefix="w", encoding="compact", batch=1, n_pressure=12, name="t"
) -> str:
    return WATER.format(
        seed=seed,
        duration=duration,
        prefix=prefix,
        encoding=encoding,
        batch=batch,
        n_pressure=n_pressure,
        name=name,
    )


def all_messages(text: str, seed: int | None = None) -> list[tuple[str, bytes]]:
    run = prepare_run(parse_scenario(text, "t.yaml"), seed=seed)
    try:
        out = [(m.topic, m.payload) for k in range(run.steps) for m in run.messages(k)]
        return out + [(m.topic, m.payload) for m in run.final_messages()]
    finally:
        run.close()


def test_same_scenario_and_seed_give_byte_identical_messages() -> None:
    text = water_scenario()
    a, b = all_messages(text), all_messages(text)
    assert len(a) > 2000 and a == b
    assert all_messages(text, seed=4) != a


def test_ground_truth_matches_what_was_published() -> None:
    scn = parse_scenario(water_scenario(), "t.yaml")
    run = prepare_run(scn)
    try:
        by_sensor: dict[str, list[tuple[int, float]]] = defaultdict(list)
        raw: dict[str, list[bytes]] = defaultdict(list)
        reasons: dict[str, set[str]] = defaultdict(set)
        for k in range(run.steps):
            for m in run.messages(k):
                raw[m.sensor_id].append(m.payload)
                try:
                    rs = decode_message(m.payload, m.sensor_id, 0, WIDE)
                except PayloadError as exc:
                    reasons[m.sensor_id].add(exc.reason)
                    continue
                for r in rs:
                    if r.quantity == "pressure":
                        by_sensor[m.sensor_id].append((r.ts_us // 1000, r.value))
        truth = run.ground_truth(run_id="x")
    finally:
        run.close()
    events = {e["type"]: e for e in truth["events"]}
    t0 = run.start_ms

    def window(e):
        start = int(time_ms(e["start"]))
        end = int(time_ms(e["end"])) if e["end"] else t0 + 3 * 3600_000
        return start, end

    burst = events["burst"]
    assert burst["start"] == "2026-11-25T17:00:00Z" and burst["end"] == "2026-11-25T18:00:00Z"
    assert burst["lon"] and 104.0 < burst["lon"] < 104.2
    affected = set(burst["affected_sensors"])
    assert len(affected) >= 3
    start, end = window(burst)
    skew = set(events["clock_skew"]["affected_sensors"])
    stuck = set(events["stuck"]["affected_sensors"])
    # the same run without the burst (same seed, so the same noise and faults): the sensors
    # whose published pressure differs during the burst are exactly the affected ones
    calm = parse_scenario(
        water_scenario().split("incidents:")[0] + "faults:" + water_scenario().split("faults:")[1],
        "t.yaml",
    )
    other = prepare_run(calm)
    try:
        assert [s.sensor_id for s in other.sensors] == [s.sensor_id for s in run.sensors]
        calm_values: dict[tuple[str, int], float] = {}
        for k in range(other.steps):
            for m in other.messages(k):
                try:
                    for r in decode_message(m.payload, m.sensor_id, 0, WIDE):
                        if r.quantity == "pressure":
                            calm_values[(m.sensor_id, r.ts_us // 1000)] = r.value
                except PayloadError:
                    pass
    finally:
        other.close()
    for sid, series in by_sensor.items():
        if sid in stuck:
            continue
        diff = max(
            abs(v - calm_values[(sid, t)])
            for t, v in series
            if start <= t < end and (sid, t) in calm_values
        )
        assert (diff > 2.0) == (sid in affected), (sid, diff)
    # faults: what the ground truth says is in the published stream
    (dropped,) = events["dropout"]["affected_sensors"]
    d0, d1 = window(events["dropout"])
    assert not [t for t, _ in by_sensor[dropped] if d0 <= t < d1]
    assert [t for t, _ in by_sensor[dropped] if t < d0] and [
        t for t, _ in by_sensor[dropped] if t >= d1
    ]
    (frozen,) = stuck
    s0, s1 = window(events["stuck"])
    assert len({v for t, v in by_sensor[frozen] if s0 <= t < s1}) == 1
    (dup,) = events["duplicate"]["affected_sensors"]
    assert len(raw[dup]) == run.steps + 10  # ten steps sent twice
    (skewed,) = skew
    assert all(t % 60_000 == 0 for t, _ in by_sensor[skewed])  # still whole minutes, 2 min ahead
    assert by_sensor[skewed][0][0] == t0 + 120_000
    (bad,) = events["malformed"]["affected_sensors"]
    assert reasons[bad] and reasons[bad] <= set(events["malformed"]["params"]["expected_reasons"])
    assert set(reasons) == {bad}


def time_ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def test_out_of_order_messages_arrive_after_newer_ones() -> None:
    scn = parse_scenario(water_scenario(), "t.yaml")
    run = prepare_run(scn)
    try:
        order = defaultdict(list)
        for k in range(run.steps):
            for m in run.messages(k):
                order[m.sensor_id].append(m.seq)
        (event,) = [e for e in run.events.values() if e.type == "out_of_order"]
        (late,) = event.affected
    finally:
        run.close()
    seqs = order[late]
    assert seqs != sorted(seqs)
    assert sorted(seqs) == list(range(1, run.steps + 1))  # nothing lost, only reordered


def test_senml_batches_decode_to_the_readings() -> None:
    text = water_scenario(encoding="senml", batch=5, duration="30m", n_pressure=3)
    text = text.split("incidents:")[0]
    run = prepare_run(parse_scenario(text, "t.yaml"))
    try:
        msgs = [m for k in range(run.steps) for m in run.messages(k)] + run.final_messages()
    finally:
        run.close()
    assert len(msgs) == len(run.sensors) * 6  # 30 steps in packs of 5
    for m in msgs:
        assert m.payload.startswith(b'[{"bn":"urn:dev:cityops:')
        rs = decode_message(m.payload, m.sensor_id, 0, WIDE)
        per_t = {r.ts_us for r in rs}
        assert len(per_t) == 5
        assert all(r.seq is None for r in rs)


def test_scenario_end_to_end_through_the_broker_into_the_database(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "e2e.yaml"
    path.write_text(water_scenario(n_pressure=6, prefix="e2e", name="e2e"))
    expected = all_messages(path.read_text())
    sub = subscribe(settings)
    try:
        report = run_scenario(settings, path, output_dir=tmp_path / "out", register_sensors=True)
        got = drain(sub, len(expected), quiet_s=0.5)
    finally:
        sub.stop(end_session=True)
    assert report.stats.messages == len(expected)
    assert sorted(got) == sorted(expected)  # every message, byte for byte, nothing else
    truth_file = json.loads((tmp_path / "out" / "ground_truth.json").read_text())
    assert truth_file["messages"] == len(expected)
    catalogue = json.loads((tmp_path / "out" / "sensors.geojson").read_text())
    assert len(catalogue["features"]) == 8
    with psycopg.connect(settings.database_url) as conn:
        rows = read_ground_truth(conn, report.run_id)
        run_row = conn.execute(
            "SELECT scenario, seed, messages, finished_at IS NOT NULL FROM sim_runs WHERE run_id = %s",
            (report.run_id,),
        ).fetchone()
        n_sensors = conn.execute(
            "SELECT count(*) FROM sensors WHERE sensor_id LIKE 'e2e-%'"
        ).fetchone()[0]
    assert run_row == ("e2e", 3, len(expected), True)
    assert n_sensors == 8
    assert [r["type"] for r in rows] == [e["type"] for e in truth_file["events"]]
    for r, e in zip(rows, truth_file["events"], strict=True):
        assert sorted(r["affected_sensors"]) == e["affected_sensors"]
        assert r["starts_at"].timestamp() * 1000 == time_ms(e["start"])
    burst = rows[0]
    assert burst["lon"] == pytest.approx(truth_file["events"][0]["lon"])
    assert burst["ends_at"] is not None


def test_devices_publish_with_their_own_identity(settings: Settings, stack, tmp_path: Path) -> None:
    # ids of this run's own: the broker's dynamic-security roles outlive a test run on a kept
    # stack, and enrolling a device twice is refused
    prefix = f"dev{uuid.uuid4().hex[:6]}"
    text = water_scenario(duration="5m", n_pressure=3, prefix=prefix, name="dev").split(
        "incidents:"
    )[0]
    path = tmp_path / "dev.yaml"
    path.write_text(text + "identities: device\n")
    run = prepare_run(parse_scenario(text, "x"))
    ids = [s.sensor_id for s in run.sensors]
    run.close()
    creds = make_credentials(ids)
    write_credentials(tmp_path / "devices.json", creds)
    enrol_devices(settings.mqtt_url, creds)
    sub = subscribe(settings)
    try:
        report = run_scenario(
            settings,
            path,
            output_dir=tmp_path / "out",
            devices=tmp_path / "devices.json",
            write_db=False,
        )
        got = drain(sub, report.stats.messages, quiet_s=0.3)
        # a device may write only its own topic: this one is dropped by the broker
        from cityops.kernel.settings import with_mqtt_credentials

        url = with_mqtt_credentials(settings.mqtt_url, ids[0], creds[ids[0]])
        with Publisher(url, f"intruder-{uuid.uuid4().hex[:6]}") as pub:
            pub.publish(
                telemetry_topic("water", ids[1]), b'{"v":1,"ts":1764115200000,"q":{"pressure":1.0}}'
            )
        stray = drain(sub, 0, quiet_s=1.0)
    finally:
        sub.stop(end_session=True)
    assert report.stats.messages == 5 * len(ids)
    assert {parse_telemetry_topic(t).sensor_id for t, _ in got} == set(ids)
    assert len(got) == report.stats.messages
    assert stray == []


def test_a_short_incident_is_attributed_even_between_truth_evaluations() -> None:
    text = (
        water_scenario()
        .split("faults:")[0]
        .replace("at: 60m, duration: 60m", "at: 65m, duration: 5m")
    )
    text = text.replace("seed: 3", "seed: 3\ntruth_every: 30m")
    run = prepare_run(parse_scenario(text, "t.yaml"))
    try:
        for k in range(run.steps):
            run.messages(k)
        (burst,) = run.events.values()
    finally:
        run.close()
    assert burst.type == "burst" and len(burst.affected) >= 3


def test_scenario_readings_reach_the_readings_table_through_ingestion(
    settings: Settings, tmp_path: Path
) -> None:
    """The whole path: scenario -> broker -> `cityops ingest` -> readings and quarantine."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import start_cityops

    start = (datetime.now(UTC) - timedelta(hours=3, minutes=5)).replace(microsecond=0)
    path = tmp_path / "ing.yaml"
    path.write_text(water_scenario(n_pressure=4, prefix="ing", name="ing"))
    run = prepare_run(parse_scenario(path.read_text(), "x"), start=start.isoformat())
    valid: set[tuple[str, str, int]] = set()
    bad = 0
    now_us = int(time.time() * 1e6)
    try:
        for m in [m for k in range(run.steps) for m in run.messages(k)] + run.final_messages():
            try:
                for r in decode_message(m.payload, m.sensor_id, now_us):
                    valid.add((r.sensor_id, r.quantity, r.ts_us))
            except PayloadError:
                bad += 1
    finally:
        run.close()
    assert bad > 0
    proc = start_cityops(settings, "ingest")

    def q(sql: str):
        with psycopg.connect(settings.database_url) as conn:
            return conn.execute(sql).fetchall()

    try:
        wait_for(
            lambda: (
                proc.poll() is not None or q("SELECT 1 FROM ingest_workers WHERE state = 'running'")
            ),
            60,
            interval_s=0.2,
            what="ingest running",
        )
        assert proc.poll() is None, "ingest did not start"
        report = run_scenario(
            settings,
            path,
            start=start.isoformat(),
            output_dir=tmp_path / "out",
            register_sensors=True,
        )
        wait_for(
            lambda: (
                q("SELECT count(*) FROM readings")[0][0] >= len(valid)
                and q("SELECT count(*) FROM quarantine")[0][0] >= bad
            ),
            60,
            interval_s=0.3,
            what="every reading stored and every malformed message quarantined",
        )
        time.sleep(0.5)  # anything more (a reading stored twice) would show now
        stored = {
            (sid, qty, int(ts.timestamp() * 1e6))
            for sid, qty, ts in q("SELECT sensor_id, quantity, ts FROM readings")
        }
        reasons = {r for (r,) in q("SELECT DISTINCT reason FROM quarantine")}
        n_quarantined = q("SELECT count(*) FROM quarantine")[0][0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert stored == valid  # exactly the readings the run published, duplicates once
    assert n_quarantined == bad
    (malformed,) = [e for e in report.ground_truth["events"] if e["type"] == "malformed"]
    assert reasons <= set(malformed["params"]["expected_reasons"])


def test_a_second_run_with_its_own_id_prefix_registers_sensors_of_its_own(
    settings: Settings, tmp_path: Path
) -> None:
    """`cityops evaluate` runs a scenario again in the same database under a prefix of the run's
    own: its sensors, readings and metered area are not the first run's."""
    path = tmp_path / "again.yaml"
    path.write_text(water_scenario(n_pressure=3, prefix="agn", name="again"))
    prefix = f"agn-{uuid.uuid4().hex[:4]}"
    report = run_scenario(
        settings, path, output_dir=tmp_path / "out", register_sensors=True, id_prefix=prefix
    )
    catalogue = json.loads((tmp_path / "out" / "sensors.geojson").read_text())
    ids = [f["properties"]["sensor_id"] for f in catalogue["features"]]
    assert ids and all(i.startswith(f"{prefix}-") for i in ids)
    with psycopg.connect(settings.database_url) as conn:
        registered = conn.execute(
            "SELECT count(*) FROM sensors WHERE sensor_id LIKE %s", (f"{prefix}-%",)
        ).fetchone()
        truth = read_ground_truth(conn, report.run_id)
    assert registered == (len(ids),)
    assert all(s.startswith(f"{prefix}-") for r in truth for s in r["affected_sensors"])
    with pytest.raises(ValueError, match="use 1-16"):
        run_scenario(settings, path, output_dir=tmp_path / "bad", id_prefix="Not Valid")
