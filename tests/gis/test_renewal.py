"""Renewal priority (issue 17 item 4): the pure score (gis/renewal.py) and the ranking over the
demo city in PostGIS, by the CLI and as a map layer (gis/renewal_db.py)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pyogrio
import pytest
from typer.testing import CliRunner

from gis.renewal import PARTS, UNKNOWN, PipeFacts, RenewalError, Weights, parts_of, rank_pipes

OLD_CAST_IRON = PipeFacts("old", "cast_iron", 100.0, 1965, "PN10", 3, 4_000, 1)
NEW_PE = PipeFacts("new", "pe", 400.0, 2020, "PN10", 0, 20, 0)


def test_an_old_small_cast_iron_main_that_breaks_comes_before_a_new_pe_trunk() -> None:
    ranked = rank_pipes([NEW_PE, OLD_CAST_IRON], Weights(), year=2026)
    assert [r.pipe_id for r in ranked] == ["old", "new"]
    old, new = ranked
    assert old.parts["age"] == 1.0  # 61 years of a 60-year life: at or past it
    assert old.parts["material"] == 1.0 and new.parts["material"] == 0.2
    assert old.parts["diameter"] == 1.0 and new.parts["diameter"] == 0.3
    assert old.parts["history"] == pytest.approx(0.875)  # 1 - 0.5^3
    # 4,000 people (log scale, 1 at 10,000) and a hospital cut off
    assert 0.9 < old.parts["criticality"] <= 1.0
    assert 0 <= new.score < old.score <= 100
    # the score is the weighted sum of the parts shown, on 0-100
    w = Weights()
    assert old.score == pytest.approx(100 * sum(getattr(w, p) * old.parts[p] for p in PARTS), 0.01)


def test_what_the_data_does_not_give_is_the_middle_and_said_so() -> None:
    bare = PipeFacts("bare", None, None, None, None, 0, None, None)
    parts, unknown = parts_of(bare, 2026)
    assert set(unknown) == {"age", "material", "diameter", "pressure", "criticality"}
    assert all(parts[p] == UNKNOWN for p in unknown)
    assert parts["history"] == 0.0  # no incident is a fact, not a gap
    # an unknown material has no service life either: its age is not judged
    odd = PipeFacts("odd", "bamboo", 200.0, 1950, "PN10", 0, 0, 0)
    assert {"age", "material"} <= set(parts_of(odd, 2026)[1])


def test_weights_are_the_planners_and_checked() -> None:
    w = Weights.parse("age=2,history=2,material=0,diameter=0,pressure=0,criticality=0")
    assert (w.age, w.history, w.material) == (0.5, 0.5, 0.0)
    by_history = rank_pipes([OLD_CAST_IRON, NEW_PE], w, year=2026)
    assert by_history[0].score == pytest.approx(100 * (0.5 * 1.0 + 0.5 * 0.875))
    assert Weights.parse("") == Weights().normalised()
    for bad in ("colour=1", "age", "age=x", "age=-1", "age=nan", ",".join(f"{p}=0" for p in PARTS)):
        with pytest.raises(RenewalError):
            Weights.parse(bad)


def test_the_demo_city_ranked_with_history_and_criticality_from_the_database(
    gis_db: str,
) -> None:
    """On the demo city's 1,472 mains: every pipe scored, incidents placed on a pipe raise it,
    criticality comes from the isolation of its segment (pipes of one segment share it)."""
    from gis.analysis import NetworkCache
    from gis.renewal_db import fetch_pipe_facts, fetch_renewal

    with psycopg.connect(gis_db, autocommit=True) as conn:
        before = {f.pipe_id: f for f in fetch_pipe_facts(conn, "water")}
        mid = sorted(before)[len(before) // 2]
        for _ in range(3):
            conn.execute(
                "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at,"
                " centre, likely_location, explanation_zh, explanation_en) VALUES ('water',"
                " 'water_burst', 'major', now(), now(), ST_SetSRID(ST_MakePoint(104.06, 30.66),"
                " 4326), %s, '爆管', 'burst')",
                (mid,),
            )
        cache = NetworkCache()
        started = time.perf_counter()
        fc = fetch_renewal(conn, "water", Weights(), top=len(before), cache=cache)
        took = time.perf_counter() - started
        facts = {f.pipe_id: f for f in fetch_pipe_facts(conn, "water", cache=cache)}
        segment = conn.execute(
            "SELECT count(*) FROM water_pipes WHERE link_kind = 'pipe'"
        ).fetchone()[0]
    print(f"renewal of {len(before)} demo mains: {took:.2f} s")
    assert fc["renewal"]["pipes_scored"] == len(before) == segment
    ranks = {f["properties"]["pipe_id"]: f["properties"] for f in fc["features"]}
    assert len(ranks) == len(before)
    scores = [f["properties"]["score"] for f in fc["features"]]
    assert scores == sorted(scores, reverse=True)
    assert facts[mid].events == 3 and before[mid].events == 0
    assert ranks[mid]["incidents"] == 3 and ranks[mid]["part_history"] == 0.875
    # criticality: every pipe on a loaded network has its isolation's figures
    assert all(f.people_cut is not None for f in facts.values())
    assert any(f.facilities_cut for f in facts.values())  # a hospital or school behind a main
    first = fc["features"][0]["properties"]
    assert {"rank", "score", "part_age", "part_criticality", "people_cut"} <= set(first)
    assert fc["features"][0]["geometry"]["type"] == "LineString"


def test_the_cli_prints_the_table_and_writes_a_map_layer(
    gis_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gis.cli import app

    monkeypatch.setenv("CITYOPS_DATABASE_URL", gis_db)
    out = tmp_path / "renew.gpkg"
    runner = CliRunner()
    r = runner.invoke(
        app, ["renewal", "water", "--top", "5", "--weights", "age=0.5", "--output", str(out)]
    )
    assert r.exit_code == 0, r.output
    lines = [x for x in r.stdout.splitlines() if x.split("\t")[0].isdigit()]
    assert [x.split("\t")[0] for x in lines] == ["1", "2", "3", "4", "5"]
    assert "weights: age 0.40" in r.output  # 0.5 of 1.25 with the others' defaults
    layer = pyogrio.read_dataframe(out)
    assert len(layer) == 5 and list(layer["rank"]) == [1, 2, 3, 4, 5]
    assert layer.geometry.geom_type.unique().tolist() == ["LineString"]
    # bad input: a clear error, nothing written
    bad = tmp_path / "bad.gpkg"
    r = runner.invoke(app, ["renewal", "power", "--output", str(bad)])
    assert r.exit_code == 2 and "water and gas" in r.output and not bad.exists()
    r = runner.invoke(app, ["renewal", "water", "--weights", "colour=1"])
    assert r.exit_code == 2 and "parts" in r.output


def test_the_planners_api_answers_as_a_layer_and_a_table(
    gis_db: str, role_tokens: dict[str, str]
) -> None:
    """``/api/renewal/water`` for a planner's token: GeoJSON (the map layer) and CSV (the table),
    best first; bad parameters are a 400 with the reason; no token, no answer."""
    import csv
    import io

    from gis.http import create_gis_app
    from gis.ogc import close_pools

    client = create_gis_app(gis_db, base_url="http://testserver").test_client()
    try:
        assert client.get("/api/renewal/water").status_code == 401
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {role_tokens['planner']}"
        r = client.get("/api/renewal/water", query_string={"top": 3, "weights": "history=1"})
        assert r.status_code == 200, r.data
        fc = r.get_json()
        assert [f["properties"]["rank"] for f in fc["features"]] == [1, 2, 3]
        assert fc["renewal"]["weights"]["history"] > Weights().normalised().history
        r = client.get("/api/renewal/water", query_string={"top": 3, "format": "csv"})
        rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
        assert [row["rank"] for row in rows] == ["1", "2", "3"] and "part_age" in rows[0]
        for bad in ({"weights": "colour=1"}, {"top": "0"}, {"window_years": "99"}):
            r = client.get("/api/renewal/water", query_string=bad)
            assert r.status_code == 400, bad
        assert client.get("/api/renewal/power").status_code == 404
    finally:
        close_pools()


def test_the_network_at_once_scores_as_each_pipe_alone() -> None:
    """``rank_pipes`` scores a whole network as one array (``parts_matrix``): the same parts,
    the same unknowns and the same order as ``parts_of`` pipe by pipe."""
    import itertools
    import random

    rnd = random.Random(7)
    materials = [None, "", "cast_iron", " PE ", "ductile_iron", "bamboo"]
    classes = [None, "PN10", "PN25", "medium_a", "odd"]
    facts = [
        PipeFacts(
            pipe_id=f"p{i:03d}",
            material=rnd.choice(materials),
            diameter_mm=rnd.choice([None, 0.0, -3.0, 80.0, 100.0, 150.0, 299.9, 600.0, 1200.0]),
            install_year=rnd.choice([None, 1950, 1990, 2026, 2030]),
            pressure_class=rnd.choice(classes),
            events=rnd.choice([0, 1, 3, -1]),
            people_cut=rnd.choice([None, 0, 26, 50_000]),
            facilities_cut=rnd.choice([None, 0, 2, 9]),
        )
        for i in range(300)
    ]
    ranked = rank_pipes(facts, Weights.parse("age=0.5,history=0.2"), year=2026)
    w = Weights.parse("age=0.5,history=0.2").normalised()
    for r in ranked:
        parts, unknown = parts_of(r.facts, 2026)
        assert r.parts == pytest.approx(parts) and r.unknown == unknown, r.pipe_id
        expected = 100 * sum(getattr(w, p) * parts[p] for p in PARTS)
        assert r.score == pytest.approx(expected, abs=0.0051)  # to two decimals
    for a, b in itertools.pairwise(ranked):
        assert (a.score, b.pipe_id) >= (b.score, a.pipe_id)  # by score, ties by id
    assert [r.pipe_id for r in rank_pipes(facts, Weights(), year=2026, top=7)] == [
        r.pipe_id for r in rank_pipes(facts, Weights(), year=2026)
    ][:7]
