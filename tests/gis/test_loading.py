"""Loading layer files into PostGIS: formats, CRS, invalid geometry, truncated files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import psycopg
import pytest
from shapely.geometry import LineString, Point, Polygon

import gis.dictionary_db
from gis.loading import LayerLoadError, load_layer_file, read_layer_file

CENTRE = (104.0657, 30.6598)

# writing test Shapefiles truncates long column names on purpose (the loader maps them back)
pytestmark = [
    pytest.mark.filterwarnings("ignore:Column names longer than 10 characters:UserWarning"),
    pytest.mark.filterwarnings("ignore:Normalized/laundered field name:RuntimeWarning"),
]


def _facilities(n: int = 5, crs: int = 4544) -> gpd.GeoDataFrame:
    pts = gpd.GeoSeries([Point(CENTRE[0] + 0.01 * i, CENTRE[1]) for i in range(n)], crs=4326)
    return gpd.GeoDataFrame(
        {
            "facility_id": [f"H{i}" for i in range(n)],
            "kind": ["hospital"] * n,
            "name_zh": [f"医院{i}" for i in range(n)],
            "capacity": [100 + i for i in range(n)],
        },
        geometry=pts.to_crs(crs),
    )


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608


@pytest.mark.parametrize(
    "suffix,driver", [(".gpkg", "GPKG"), (".geojson", "GeoJSON"), (".shp", "ESRI Shapefile")]
)
def test_load_each_format_transforms_to_4326(
    gis_conn: psycopg.Connection, tmp_path: Path, suffix: str, driver: str
) -> None:
    gdf = _facilities(crs=4326 if driver == "GeoJSON" else 4544)
    path = tmp_path / f"hospitals{suffix}"
    gdf.to_file(path, driver=driver)
    report = load_layer_file(gis_conn, path, "facilities", licence="test")
    assert report.features == 5
    assert _count(gis_conn, "facilities") == 5
    lon, lat, srid, node = gis_conn.execute(
        "SELECT ST_X(geom), ST_Y(geom), ST_SRID(geom), water_node_id FROM facilities"
        " WHERE facility_id = 'H2'"
    ).fetchone()
    assert srid == 4326
    assert lon == pytest.approx(CENTRE[0] + 0.02, abs=1e-7)
    assert lat == pytest.approx(CENTRE[1], abs=1e-7)
    assert node is not None  # linked to the demo water network
    meta = gis_conn.execute(
        "SELECT feature_count, licence, demo FROM gis_layers WHERE name = 'facilities'"
    ).fetchone()
    assert meta == (5, "test", False)


def test_file_without_crs_is_refused_and_crs_option_accepts_it(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "nocrs.shp"
    _facilities().to_file(path)
    path.with_suffix(".prj").unlink()
    before = _count(gis_conn, "facilities")
    with pytest.raises(LayerLoadError, match="declares no CRS"):
        load_layer_file(gis_conn, path, "facilities")
    assert _count(gis_conn, "facilities") == before
    load_layer_file(gis_conn, path, "facilities", assume_crs="EPSG:4544")
    assert _count(gis_conn, "facilities") == 5


def test_wrong_crs_puts_data_outside_chengdu_and_is_refused(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    gdf = _facilities(crs=4544).set_crs(4547, allow_override=True)  # the CM 114E zone: wrong here
    path = tmp_path / "wrongzone.gpkg"
    gdf.to_file(path)
    with pytest.raises(LayerLoadError, match="outside Chengdu"):
        load_layer_file(gis_conn, path, "facilities")


def test_invalid_polygon_is_repaired_or_refused(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    x, y = CENTRE
    bowtie = Polygon([(x, y), (x + 0.1, y + 0.1), (x + 0.1, y), (x, y + 0.1), (x, y)])
    gdf = gpd.GeoDataFrame(
        {"adcode": [510104], "name_zh": ["锦江区"], "name_en": ["Jinjiang"]},
        geometry=[bowtie],
        crs=4326,
    )
    path = tmp_path / "bowtie.geojson"
    gdf.to_file(path, driver="GeoJSON")
    with pytest.raises(LayerLoadError, match="invalid geometry for 510104: Self-intersection"):
        load_layer_file(gis_conn, path, "districts", repair=False)
    assert _count(gis_conn, "districts") == 20
    report = load_layer_file(gis_conn, path, "districts")
    assert report.repaired == ["510104"]
    valid, kind, area = gis_conn.execute(
        "SELECT ST_IsValid(geom), GeometryType(geom), ST_Area(geom) FROM districts"
    ).fetchone()
    assert valid and kind == "MULTIPOLYGON"
    assert area == pytest.approx(0.005, rel=1e-6)  # two triangles of 0.1 x 0.05 / 2 ... x 2


def test_degenerate_line_cannot_be_repaired_into_a_pipe(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    x, y = CENTRE
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {
                "type": "Feature",
                "properties": {"pipe_id": "P1", "from_node": "a", "to_node": "b"},
                "geometry": {"type": "LineString", "coordinates": [[x, y], [x + 0.001, y]]},
            },
            {
                "type": "Feature",
                "properties": {"pipe_id": "P2", "from_node": "b", "to_node": "c"},
                "geometry": {"type": "LineString", "coordinates": [[x, y], [x, y]]},
            },
        ],
    }
    path = tmp_path / "pipes.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    before = _count(gis_conn, "water_pipes")
    with pytest.raises(LayerLoadError, match="geometry of P2 is a"):
        load_layer_file(gis_conn, path, "water_pipes")
    assert _count(gis_conn, "water_pipes") == before


def test_truncated_files_leave_the_old_layer_intact(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    good = tmp_path / "good.geojson"
    _facilities(8, crs=4326).to_file(good, driver="GeoJSON")
    load_layer_file(gis_conn, good, "facilities")
    assert _count(gis_conn, "facilities") == 8

    data = good.read_bytes()
    cut = tmp_path / "cut.geojson"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(LayerLoadError):
        load_layer_file(gis_conn, cut, "facilities")

    for name in ("many.shp", "many.gpkg"):  # half of a Shapefile, half of a GeoPackage
        path = tmp_path / name
        _facilities(50).to_file(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(LayerLoadError):
            load_layer_file(gis_conn, path, "facilities")

    assert _count(gis_conn, "facilities") == 8
    ids = [r[0] for r in gis_conn.execute("SELECT facility_id FROM facilities ORDER BY 1")]
    assert ids == [f"H{i}" for i in range(8)]


def test_database_refusal_rolls_back_the_whole_load(
    gis_conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _count(gis_conn, "water_pipes")
    x, y = CENTRE
    gdf = gpd.GeoDataFrame(
        {
            "pipe_id": ["A", "B"],
            "from_node": ["n1", "n2"],
            "to_node": ["n2", "n3"],
            "diameter_mm": [200.0, -5.0],  # violates the CHECK constraint
        },
        geometry=[
            LineString([(x, y), (x + 0.001, y)]),
            LineString([(x + 0.001, y), (x + 0.002, y)]),
        ],
        crs=4326,
    )
    path = tmp_path / "bad.gpkg"
    gdf.to_file(path)
    # the data dictionary's check says so first (tests/gis/test_dictionary.py) ...
    with pytest.raises(LayerLoadError, match="diameter_mm must be > 0: 1 rows break it, B"):
        load_layer_file(gis_conn, path, "water_pipes")
    assert _count(gis_conn, "water_pipes") == before
    # ... and a rule it did not know is the database's to refuse: nothing stored either
    monkeypatch.setattr(gis.dictionary_db, "enforce", lambda *a, **k: None)
    with pytest.raises(LayerLoadError, match="refused"):
        load_layer_file(gis_conn, path, "water_pipes")
    assert _count(gis_conn, "water_pipes") == before


def test_read_refuses_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "x.kml"
    p.write_text("<kml/>")
    with pytest.raises(LayerLoadError, match="unsupported format"):
        read_layer_file(p)
