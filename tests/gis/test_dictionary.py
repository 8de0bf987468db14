"""The data dictionary (issue 17 item 6): complete names, rules read from the database's CHECK
constraints, served whole, and a layer file checked against it before anything is written."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from shapely.geometry import Point

from gis.dictionary import (
    CSV_COLUMNS,
    NAMES,
    Rule,
    dictionary_rows,
    parse_check,
    unit_of,
)
from gis.dictionary_db import fetch_dictionary
from gis.layers import LAYERS
from gis.loading import LayerLoadError, load_layer_file
from sensors.quantities import QUANTITIES, QUANTITY_NAMES


def test_every_layer_field_value_and_quantity_has_a_name_in_both_languages() -> None:
    for lang in ("zh", "en"):
        for layer in LAYERS.values():
            assert NAMES[lang].get(f"layer.{layer.name}"), (lang, layer.name)
            for column in layer.column_names:
                assert NAMES[lang].get(f"field.{column}"), (lang, layer.name, column)
        assert set(QUANTITY_NAMES[lang]) == set(QUANTITIES), lang
    assert set(NAMES["zh"]) == set(NAMES["en"])
    assert unit_of("diameter_mm") == "mm" and unit_of("area_m2") == "m²"
    assert unit_of("kind") == ""


def test_check_constraints_as_the_database_prints_them() -> None:
    col, rule = parse_check("CHECK ((kind = ANY (ARRAY['junction'::text, 'valve'::text])))")
    assert col == "kind" and rule.allowed == ("junction", "valve")
    assert rule.violated_by("pump") and not rule.violated_by("valve")
    assert not rule.violated_by(None)  # empty is the required check's business
    col, rule = parse_check("CHECK (((install_year >= 1850) AND (install_year <= 2100)))")
    assert col == "install_year" and (rule.low, rule.high) == (1850, 2100)
    assert rule.violated_by(1700) and not rule.violated_by(1850) and rule.violated_by(2101)
    col, rule = parse_check("CHECK ((diameter_mm > (0)::double precision))")
    assert col == "diameter_mm" and rule.violated_by(0.0) and not rule.violated_by(0.1)
    assert rule.describe() == "> 0"
    assert parse_check("CHECK ((a > b))") is None  # two columns: not a field's rule
    assert parse_check("CHECK ((lower(x) = x))") is None
    assert Rule(allowed=("a", "b")).describe() == "one of a, b"


def test_the_dictionary_is_what_the_database_enforces(gis_conn: psycopg.Connection) -> None:
    doc = fetch_dictionary(gis_conn)
    layers = {layer["name"]: layer for layer in doc["layers"]}
    assert set(layers) == set(LAYERS)
    nodes = {f["name"]: f for f in layers["water_nodes"]["fields"]}
    kinds = [a["code"] for a in nodes["kind"]["allowed"]]
    assert kinds == ["junction", "valve", "hydrant", "tank", "reservoir"]
    assert nodes["kind"]["allowed"][1] == {"code": "valve", "zh": "阀门", "en": "valve"}
    pipes = {f["name"]: f for f in layers["water_pipes"]["fields"]}
    assert (pipes["install_year"]["min"], pipes["install_year"]["max"]) == (1850, 2100)
    assert pipes["diameter_mm"]["unit"] == "mm" and pipes["diameter_mm"]["min"] == 0
    assert pipes["diameter_mm"]["min_inclusive"] is False
    assert pipes["pipe_id"]["required"] and pipes["pipe_id"]["label"]["zh"] == "管段编号"
    assert layers["facilities"]["classification"] == "restricted"
    assert layers["water_pipes"]["crs"] == "EPSG:4326"
    assert {q["name"] for q in doc["quantities"]} == set(QUANTITIES)
    pressure = next(q for q in doc["quantities"] if q["name"] == "pressure")
    assert pressure["unit"] == "kPa" and "MPa" in pressure["accepted_units"]
    bands = {b["band"]: b for b in doc["scales"]}
    assert list(bands) == ["city", "district", "neighbourhood", "street"]
    assert (
        "valve" in bands["neighbourhood"]["node_kinds"] and bands["street"]["node_kinds"] == "all"
    )
    assert bands["district"]["scale"][0] == "1:469,600"
    rows = dictionary_rows(doc)
    fields = sum(len(layer["fields"]) for layer in doc["layers"])
    assert len(rows) == fields + len(doc["quantities"]) + len(doc["sensor_types"])
    assert all(set(r) == set(CSV_COLUMNS) for r in rows)
    json.dumps(doc, ensure_ascii=False)  # a document, as served


def _nodes_file(tmp_path: Path) -> Path:
    frame = gpd.GeoDataFrame(
        {
            "node_id": ["N1", "N2", "N3", "N4"],
            "kind": ["junction", "pumpstation", "valve", "well"],
            "status": ["open", "half-open", "closed", "open"],
            "customers": [3, 0, -2, 1],
        },
        geometry=[Point(104.06 + i * 0.001, 30.66) for i in range(4)],
        crs=4326,
    )
    path = tmp_path / "nodes.geojson"
    frame.to_file(path, driver="GeoJSON")
    return path


def test_a_layer_file_is_checked_against_the_dictionary_before_anything_is_written(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    before = gis_conn.execute("SELECT count(*) FROM water_nodes").fetchone()[0]
    with pytest.raises(LayerLoadError) as err:
        load_layer_file(gis_conn, _nodes_file(tmp_path), "water_nodes")
    said = str(err.value)
    # every broken rule at once, with the rows that break it
    assert "water_nodes.kind must be one of junction, valve, hydrant, tank, reservoir" in said
    assert "2 rows break it, N2 ('pumpstation'), N4 ('well')" in said
    assert "water_nodes.status must be one of open, closed: 1 rows break it, N2" in said
    assert "water_nodes.customers must be >= 0: 1 rows break it, N3 (-2)" in said
    assert gis_conn.execute("SELECT count(*) FROM water_nodes").fetchone()[0] == before


def test_the_dictionary_as_csv_and_json_from_the_cli(gis_db: str, monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from gis.cli import app

    monkeypatch.setenv("CITYOPS_DATABASE_URL", gis_db)
    runner = CliRunner()
    out = tmp_path / "dictionary.csv"
    r = runner.invoke(app, ["dictionary", "--format", "csv", "--output", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    kind = next(x for x in rows if x["layer"] == "water_nodes" and x["name"] == "kind")
    assert kind["name_zh"] == "类型" and kind["allowed"].startswith("junction|valve")
    r = runner.invoke(app, ["dictionary"])
    assert r.exit_code == 0 and json.loads(r.stdout)["name"] == "cityops data dictionary"
