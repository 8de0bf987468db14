"""The planners' API and OGC API behind the access door (issue 14; docs/decisions/0071):
every route needs a token or a session, classes and token scopes hide and refuse layers,
parameters are bounded, exports are watermarked and audited, answers carry security headers,
and errors never show a traceback. Real PostgreSQL/PostGIS, Flask's test client and, for GDAL,
a real server read by Debian's ``ogrinfo``."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyogrio
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql
from werkzeug.serving import make_server

from access.accounts import login, write_user_disabled
from access.tokens import new_api_token, revoke_token, write_token
from cityops.shell.stack import free_port
from gis.http import create_gis_app
from gis.layers import LAYERS
from gis.ogc import close_pools
from tests.gis.conftest import ROLE_USERS, add_user, bearer, issue_token

# one request per route of both APIs (the test below checks that the list covers the app)
ROUTES: list[tuple[str, str]] = [
    ("GET", "/api/layers"),
    ("GET", "/api/layers/water_pipes?limit=3"),
    ("GET", "/api/query?layer=water_pipes&limit=3"),
    ("POST", "/api/query?layer=water_pipes&limit=3"),
    ("GET", "/api/state"),
    ("GET", "/api/dictionary"),
    ("GET", "/api/signing-key"),
    ("GET", "/api/isolation/water/WP000001"),
    ("GET", "/api/shutdown/water?devices=WV000001"),
    ("GET", "/api/renewal/water?top=3"),
    ("GET", "/api/trace/water/WP000001"),
    ("GET", "/api/leak?point=104.0657,30.6598&radius_m=200"),
    ("GET", "/ogc/"),
    ("GET", "/ogc/openapi"),
    ("GET", "/ogc/conformance"),
    ("GET", "/ogc/collections"),
    ("GET", "/ogc/collections/water_pipes"),
    ("GET", "/ogc/collections/water_pipes/queryables"),
    ("GET", "/ogc/collections/water_pipes/schema"),
    ("GET", "/ogc/collections/water_pipes/items?limit=3"),
    ("POST", "/ogc/collections/water_pipes/items?limit=3"),
    ("GET", "/ogc/collections/water_pipes/items/WP000001"),
]
OPEN_ROUTES = {"/healthz", "/api/healthz", "/ogc/healthz"}


@pytest.fixture
def app(gis_db: str) -> Iterator[Flask]:
    a = create_gis_app(gis_db, base_url="http://testserver")
    yield a
    close_pools()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client that sends no credentials unless a test adds them."""
    return app.test_client()


def _call(client: FlaskClient, method: str, url: str, headers: dict[str, str] | None = None):
    if method == "POST":
        body = {
            "polygon": {
                "type": "Polygon",
                "coordinates": [[[104.0, 30.6], [104.1, 30.6], [104.1, 30.7], [104.0, 30.6]]],
            }
        }
        if "/ogc/" in url:
            body = {"op": "<", "args": [{"property": "install_year"}, 1990]}
        return client.post(url, json=body, headers=headers or {})
    return client.get(url, headers=headers or {})


def _counts(db: str) -> dict[str, int]:
    tables = [layer.table for layer in LAYERS.values()] + [
        "dashboard_users",
        "api_tokens",
        "gis_layers",
        "alerts",
    ]
    with psycopg.connect(db) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in tables
        }


def _exports(db: str) -> list[dict]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT actor, target, detail FROM security_audit WHERE action = 'export' ORDER BY id"
        ).fetchall()
    return [{"actor": r[0], "target": r[1], **r[2]} for r in rows]


def test_every_route_is_listed_and_needs_a_login(app: Flask, client: FlaskClient) -> None:
    rules = {r.rule for r in app.url_map.iter_rules() if r.endpoint != "static"} - OPEN_ROUTES
    covered = set()
    for method, url in ROUTES:
        path = url.split("?")[0]
        adapter = app.url_map.bind("testserver")
        rule, _ = adapter.match(path, method=method, return_rule=True)
        covered.add(rule.rule)
    assert rules <= covered, f"routes without a test: {rules - covered}"

    for method, url in ROUTES:
        r = _call(client, method, url)
        assert r.status_code == 401, (method, url, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="cityops"')
        assert "authentication required" in r.get_json()["error"]
        assert r.headers["Cache-Control"] == "no-store"
    for path in OPEN_ROUTES:
        r = client.get(path)
        assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_bad_tokens_are_refused(gis_db: str, client: FlaskClient) -> None:
    add_user(gis_db, "alice", "planner")
    good = issue_token(gis_db, "alice")
    assert client.get("/api/layers", headers=bearer(good)).status_code == 200

    def refused(headers: dict[str, str], reason: str) -> None:
        for method, url in (("GET", "/api/layers"), ("GET", "/ogc/collections")):
            r = _call(client, method, url, headers)
            assert r.status_code == 401, (headers, url)
            assert reason in r.get_json()["error"], r.get_json()
            assert 'error="invalid' in r.headers["WWW-Authenticate"]

    refused(bearer(new_api_token()), "invalid token")  # well-formed, never issued
    refused(bearer(good[:-1] + ("A" if good[-1] != "A" else "B")), "invalid token")
    refused(bearer("cot_short"), "invalid token")
    refused({"Authorization": f"Basic {good}"}, "malformed Authorization")
    refused({"Authorization": "Bearer"}, "malformed Authorization")

    with psycopg.connect(gis_db, autocommit=True) as conn:
        long_ago = datetime.now(UTC) - timedelta(days=40)
        expired, _ = write_token(conn, "alice", "old", actor="test", now=long_ago, days=30)
        revoked, t = write_token(conn, "alice", "gone", actor="test", now=datetime.now(UTC))
        revoke_token(conn, t.id, actor="test", now=datetime.now(UTC))
    refused(bearer(expired), "token expired")
    refused(bearer(revoked), "token revoked")

    with psycopg.connect(gis_db, autocommit=True) as conn:
        write_user_disabled(conn, "alice", True)
    refused(bearer(good), "account is disabled")  # at once


def test_classes_hide_and_refuse_layers(client: FlaskClient, role_tokens: dict[str, str]) -> None:
    planner = bearer(role_tokens["planner"])
    names = {m["name"] for m in client.get("/api/layers", headers=planner).get_json()}
    assert "facilities" not in names and {"water_pipes", "districts", "sensors"} <= names
    ogc = client.get("/ogc/collections", headers=planner).get_json()
    ids = {c["id"] for c in ogc["collections"]}
    assert "facilities" not in ids and {"water_pipes", "alert_locations"} <= ids
    for url in ("/ogc/", "/ogc/openapi", "/ogc/collections"):
        assert b"facilities" not in client.get(url, headers=planner).data, url

    for method, url in (
        ("GET", "/api/layers/facilities"),
        ("GET", "/api/query?layer=facilities&limit=3"),
        ("GET", "/api/query?layer=water_pipes&near=facilities:500:kind=school"),
        ("GET", "/api/query?layer=water_pipes&feature=facilities:HO0001&radius_m=300"),
        ("GET", "/api/isolation/water/WP000001"),
        ("GET", "/api/shutdown/water?devices=WV000001"),
        ("GET", "/api/leak?point=104.0657,30.6598"),
        ("GET", "/ogc/collections/facilities"),
        ("GET", "/ogc/collections/facilities/items"),
        ("GET", "/ogc/collections/facilities/items/HO0001"),
        ("GET", "/ogc/collections/facilities/queryables"),
    ):
        r = _call(client, method, url, planner)
        assert r.status_code == 403, (url, r.status_code)
        assert "restricted" in r.get_json()["error"]
    assert client.get("/api/trace/water/WP000001", headers=planner).status_code == 200

    emergency = bearer(role_tokens["emergency"])
    assert client.get("/api/layers/facilities?limit=2", headers=emergency).status_code == 200
    assert client.get("/api/isolation/water/WP000001", headers=emergency).status_code == 200
    ids = {
        c["id"] for c in client.get("/ogc/collections", headers=emergency).get_json()["collections"]
    }
    assert "facilities" in ids


def test_a_scoped_token_reads_only_its_layers(gis_db: str, client: FlaskClient) -> None:
    add_user(gis_db, "bob", "admin")
    scoped = bearer(issue_token(gis_db, "bob", layers="water_pipes,water_nodes"))
    names = {m["name"] for m in client.get("/api/layers", headers=scoped).get_json()}
    assert names == {"water_pipes", "water_nodes"}
    ids = {
        c["id"] for c in client.get("/ogc/collections", headers=scoped).get_json()["collections"]
    }
    assert ids == {"water_pipes", "water_nodes"}
    assert client.get("/api/layers/water_pipes?limit=2", headers=scoped).status_code == 200
    assert client.get("/api/trace/water/WP000001", headers=scoped).status_code == 200
    for url in (
        "/api/layers/districts",
        "/api/layers/gas_pipes",
        "/api/isolation/water/WP000001",  # reads facilities too
        "/ogc/collections/gas_pipes/items",
        "/ogc/collections/districts",
    ):
        r = client.get(url, headers=scoped)
        assert r.status_code == 403 and "limited to" in r.get_json()["error"], url


def test_a_dashboard_session_cookie_opens_the_api(gis_db: str, client: FlaskClient) -> None:
    add_user(gis_db, "carol", "planner")
    with psycopg.connect(gis_db, autocommit=True) as conn:
        session, outcome = login(
            conn, "carol", "correct horse battery", "127.0.0.1", datetime.now(UTC)
        )
    assert outcome == "ok" and session
    client.set_cookie("cityops_session", session)
    assert client.get("/api/layers").status_code == 200
    assert client.get("/ogc/collections/water_pipes/items?limit=1").status_code == 200
    assert client.get("/api/layers/facilities").status_code == 403
    client.set_cookie("cityops_session", "not-a-session")
    r = client.get("/api/layers")
    assert r.status_code == 401 and "sign in" in r.get_json()["error"]


@pytest.fixture
def served(gis_db: str) -> Iterator[str]:
    """``cityops gis serve``'s app on a real socket (threaded werkzeug server)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_gis_app(gis_db, base_url=base)
    server = make_server("127.0.0.1", port, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, name="gis-api-test", daemon=True)
    t.start()
    yield base
    server.shutdown()
    t.join(5)
    close_pools()


def test_ogrinfo_reads_a_collection_with_a_token_and_not_without(
    served: str, gis_db: str, role_tokens: dict[str, str]
) -> None:
    ogrinfo = shutil.which("ogrinfo")
    assert ogrinfo, "ogrinfo missing: apt-get install gdal-bin (./run installs it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDAL_HTTP")}
    cmd = [ogrinfo, "-ro", "-so", "-nomd", f"OAPIF:{served}/ogc", "water_pipes"]
    with_token = {**env, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {role_tokens['planner']}"}
    r = subprocess.run(cmd, env=with_token, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(gis_db) as conn:
        n = conn.execute("SELECT count(*) FROM water_pipes").fetchone()[0]
    assert f"Feature Count: {n}" in r.stdout
    # a planner's GDAL does not even list the restricted layer
    r = subprocess.run(
        [ogrinfo, "-ro", "-q", f"OAPIF:{served}/ogc"],
        env=with_token,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "water_pipes" in r.stdout and "facilities" not in r.stdout
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "401" in r.stderr


BAD_PARAMS = [
    ("/api/layers/water_pipes", {"limit": "10000000"}, "limit"),
    ("/api/layers/water_pipes", {"limit": "-1"}, "limit"),
    ("/api/layers/water_pipes", {"limit": "0"}, "limit"),
    ("/api/layers/water_pipes", {"limit": "1e3"}, "limit"),
    ("/api/layers/water_pipes", {"offset": "-5"}, "offset"),
    ("/api/layers/water_pipes", {"offset": "1000001"}, "offset"),
    ("/api/layers/water_pipes", {"offset": "99999999999999999999"}, "offset"),
    ("/api/layers/water_pipes", {"zoom": "inf"}, "zoom"),
    ("/api/layers/water_pipes", {"zoom": "nan"}, "zoom"),
    ("/api/layers/water_pipes", {"zoom": "-1"}, "zoom"),
    ("/api/layers/water_pipes", {"zoom": "31"}, "zoom"),
    ("/api/layers/water_pipes", {"zoom": "ten"}, "zoom"),
    ("/api/layers/water_pipes", {"bbox": "1,2,3"}, "bbox"),
    ("/api/layers/water_pipes", {"bbox": "104,30,inf,31"}, "bbox"),
    ("/api/layers/water_pipes", {"bbox": "105,30,104,31"}, "bbox"),
    ("/api/layers/water_pipes", {"bbox": "104,30,200,31"}, "bbox"),
    ("/api/layers/water_pipes", {"format": "xls"}, "format"),
    ("/api/query", {"layer": "water_pipes", "limit": "10001"}, "limit"),
    ("/api/query", {"layer": "water_pipes", "offset": "-1"}, "offset"),
    ("/api/query", {"layer": "facilities", "point": "104,30", "radius_m": "1e309"}, "radius_m"),
    ("/api/query", {"layer": "facilities", "point": "104,30", "radius_m": "nan"}, "radius_m"),
    ("/api/query", {"layer": "facilities", "point": "104,30", "nearest": "0"}, "nearest"),
    ("/api/query", {"layer": "facilities", "point": "inf,30", "nearest": "2"}, "point"),
    ("/api/query", {"layer": "water_pipes", "district": "abc"}, "district"),
    ("/api/state", {"by": "planet"}, "by"),
    ("/api/state", {"resolution": "99"}, "resolution"),
    ("/api/state", {"zoom": "-inf"}, "zoom"),
    ("/api/leak", {"point": "104.06,30.66", "radius_m": "inf"}, "radius_m"),
    ("/api/trace/water/WP000001", {"direction": "sideways"}, "direction"),
    ("/ogc/collections/water_pipes/items", {"limit": "0"}, "limit"),
    ("/ogc/collections/water_pipes/items", {"limit": "10001"}, "limit"),
    ("/ogc/collections/water_pipes/items", {"limit": "10000000"}, "limit"),
    ("/ogc/collections/water_pipes/items", {"offset": "-1"}, "offset"),
    ("/ogc/collections/water_pipes/items", {"offset": "1e6"}, "offset"),
    ("/ogc/collections/water_pipes/items", {"bbox": "nan,30,104,31"}, "bbox"),
    ("/ogc/collections/water_pipes/items", {"bbox": "104,30,105"}, "bbox"),
    ("/ogc/collections/water_pipes/items", {"f": "xml"}, "f must be"),
    ("/ogc/collections", {"f": "jsonld"}, "f must be"),
    ("/ogc/collections/water_pipes/items", {"resulttype": "all"}, "resulttype"),
    ("/ogc/collections/water_pipes/items", {"skipGeometry": "maybe"}, "skipGeometry"),
    ("/ogc/collections/water_pipes/items", {"datetime": "yesterday"}, "datetime"),
]


def test_parameters_out_of_range_are_400_with_a_reason(
    client: FlaskClient, admin_token: str
) -> None:
    h = bearer(admin_token)
    for path, params, word in BAD_PARAMS:
        r = client.get(path, query_string=params, headers=h)
        assert r.status_code == 400, (path, params, r.status_code, r.data[:200])
        err = r.get_json()["error"]
        assert word in err, (path, params, err)
    # the previously 12 MB answer is now at most 10,000 features and bounded by default
    r = client.get("/api/layers/water_pipes", headers=h)
    assert r.status_code == 200 and len(r.get_json()["features"]) == 1000
    r = client.get(
        "/api/layers/water_pipes", query_string={"limit": 10_000, "offset": 1400}, headers=h
    )
    assert r.status_code == 200 and len(r.get_json()["features"]) == 72  # 1,472 pipes
    r = client.post(
        "/api/query?layer=water_pipes",
        data=b"x" * (2 * 1024 * 1024),
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "error" in r.get_json()
    r = client.post(
        "/api/query?layer=water_pipes",
        data=b"[1, 2]",
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 400


INJECTIONS = [
    "'; DROP TABLE water_pipes; --",
    "water_pipes; DELETE FROM facilities",
    "1 OR 1=1",
    '" OR ""="',
    "1); DROP TABLE api_tokens; --",
    "name) FROM dashboard_users --",
]


def test_sql_injection_in_every_parameter_touches_nothing(
    gis_db: str, client: FlaskClient, admin_token: str
) -> None:
    h = bearer(admin_token)
    before = _counts(gis_db)
    # names, ids and numbers: refused (400) or not found (404)
    refused_paths = [
        "/api/layers/{x}",
        "/api/isolation/water/{x}",
        "/api/isolation/{x}/WP000001",
        "/api/trace/water/{x}",
        "/api/trace/{x}/WP000001",
        "/ogc/collections/{x}",
        "/ogc/collections/{x}/items",
        "/ogc/collections/{x}/queryables",
    ]
    refused_params = (
        [("/api/layers/water_pipes", {}, k) for k in ("limit", "offset", "zoom", "bbox", "format")]
        + [
            ("/api/query", {"layer": "water_pipes"}, k)
            for k in (
                "layer",
                "where",
                "district",
                "point",
                "feature",
                "radius_m",
                "nearest",
                "near",
                "alerts",
                "limit",
                "offset",
                "polygon",
                "format",
            )
        ]
        + [("/api/state", {}, k) for k in ("by", "resolution", "zoom")]
        + [
            ("/api/isolation/water/WP000001", {}, "unavailable"),
            ("/api/trace/water/WP000001", {}, "direction"),
            ("/api/leak", {"point": "104.06,30.66"}, "pipe"),
            ("/api/leak", {}, "point"),
            ("/api/leak", {"point": "104.06,30.66"}, "radius_m"),
        ]
        + [
            ("/ogc/collections/water_pipes/items", {}, k)
            for k in (
                "limit",
                "offset",
                "bbox",
                "sortby",
                "properties",
                "filter",
                "datetime",
                "resulttype",
                "skipGeometry",
                "f",
                "filter-lang",
            )
        ]
    )
    for x in INJECTIONS:
        for p in refused_paths:
            r = client.get(p.replace("{x}", x.replace("/", "%2F")), headers=h)
            assert r.status_code in (400, 404), (p, x, r.status_code)
        for path, base, key in refused_params:
            r = client.get(path, query_string={**base, key: x}, headers=h)
            assert r.status_code in (400, 404), (path, key, x, r.status_code, r.data[:200])
        # a where value and an OGC property value are bound parameters: legal, matching nothing
        r = client.get(
            "/api/query", query_string={"layer": "water_pipes", "where": f"material={x}"}, headers=h
        )
        assert r.status_code == 200 and r.get_json()["features"] == []
        r = client.get(
            "/ogc/collections/water_pipes/items", query_string={"material": x}, headers=h
        )
        assert r.status_code == 200 and r.get_json()["features"] == []
        r = client.get("/ogc/collections/water_pipes/items", query_string={x: "1"}, headers=h)
        assert r.status_code == 400
    assert _counts(gis_db) == before


def test_exports_are_watermarked_and_audited(
    gis_db: str, client: FlaskClient, role_tokens: dict[str, str], tmp_path: Path
) -> None:
    h = bearer(role_tokens["planner"])
    user = ROLE_USERS["planner"]
    r = client.get("/api/layers/water_pipes?limit=5", headers=h)
    doc = r.get_json()
    mark = doc["cityops:export"]
    assert mark["by"] == user and mark["classification"] == "internal"
    assert mark["at"].endswith("+08:00") and mark["layers"] == ["water_pipes"]
    geojson_bytes = len(r.data)

    r = client.get("/api/query?layer=water_pipes&limit=4&format=csv", headers=h)
    rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert len(rows) == 4 and all(
        row["cityops_export"].startswith(f"by={user};")
        and "classification=internal" in row["cityops_export"]
        for row in rows
    )
    assert r.headers["Content-Disposition"] == 'attachment; filename="water_pipes.csv"'

    r = client.get("/api/layers/water_nodes?limit=7&format=gpkg", headers=h)
    assert r.status_code == 200 and r.data[:16] == b"SQLite format 3\x00"
    path = tmp_path / "x.gpkg"
    path.write_bytes(r.data)
    meta = pyogrio.read_info(path)["dataset_metadata"]
    assert json.loads(meta["cityops_export"])["by"] == user
    gpkg_bytes = len(r.data)

    r = client.get("/ogc/collections/sensors/items?limit=3", headers=h)
    assert r.status_code == 200 and r.get_json()["cityops:export"]["by"] == user
    ogc_bytes = len(r.data)
    r = client.get("/ogc/collections/water_pipes/items/WP000001", headers=h)
    assert r.get_json()["cityops:export"]["layers"] == ["water_pipes"]

    # public data is neither marked nor recorded
    r = client.get("/api/layers/districts?limit=2", headers=h)
    assert r.status_code == 200 and "cityops:export" not in r.get_json()
    assert (
        "cityops:export"
        not in client.get("/ogc/collections/districts/items?limit=2", headers=h).get_json()
    )

    got = _exports(gis_db)
    assert [(e["actor"], e["target"], e["format"], e["features"]) for e in got] == [
        (user, "water_pipes", "geojson", 5),
        (user, "water_pipes", "csv", 4),
        (user, "water_nodes", "gpkg", 7),
        (user, "sensors", "json", 0),
        (user, "water_pipes", "json", 1),
    ]
    assert [got[0]["bytes"], got[2]["bytes"], got[3]["bytes"]] == [
        geojson_bytes,
        gpkg_bytes,
        ogc_bytes,
    ]
    assert all(e["classification"] == "internal" and e["via"].startswith("token:") for e in got)


def test_security_headers_on_every_answer(client: FlaskClient, admin_token: str) -> None:
    h = bearer(admin_token)
    for url, status in (
        ("/api/layers", 200),
        ("/api/layers/water_pipes?limit=1&format=gpkg", 200),
        ("/ogc/collections/water_pipes/items?limit=1", 200),
        ("/ogc/collections?f=html", 200),
        ("/api/layers/nope", 404),
        ("/no/such/route", 404),
        ("/api/layers/water_pipes?limit=0", 400),
    ):
        r = client.get(url, headers=h)
        assert r.status_code == status, url
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    r = client.get("/api/layers")  # refused: still the headers
    assert r.status_code == 401 and r.headers["X-Frame-Options"] == "DENY"
    r = client.get("/healthz")
    assert r.headers["Cache-Control"] == "no-cache" and "Content-Security-Policy" in r.headers


def test_an_unexpected_error_is_a_short_500(
    client: FlaskClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gis.http
    import gis.ogc

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail in /srv/cityops/gis/multiscale.py line 42")

    monkeypatch.setattr(gis.http, "fetch_sensor_state", boom)
    monkeypatch.setattr(gis.ogc.CityopsPostGISProvider, "query", boom)
    h = bearer(admin_token)
    for url in ("/api/state", "/ogc/collections/water_pipes/items"):
        r = client.get(url, headers=h)
        assert r.status_code == 500, url
        assert r.get_json() == {"error": "internal error; it has been logged", "status": 500}
        assert b"secret" not in r.data and b"Traceback" not in r.data
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_exported_files_carry_an_sm2_signature_a_receiver_verifies(
    gis_db: str, role_tokens: dict[str, str], tmp_path: Path
) -> None:
    """A partner saves the file and the header's signature, fetches the public key once, and
    `cityops verify` says whether the file is exactly what cityops sent."""
    import base64
    import subprocess
    import sys

    from cityops.kernel.crypto import generate_keys

    keys = tmp_path / "keys"
    made = generate_keys(keys)
    app = create_gis_app(gis_db, base_url="http://testserver", keys_dir=str(keys))
    client = app.test_client()
    h = bearer(role_tokens["planner"])
    pub = client.get("/api/signing-key", headers=h)
    assert pub.status_code == 200 and pub.headers["X-Key-Id"] == made["sm2"]
    assert client.get("/api/signing-key").status_code == 401
    assert client.get("/api/signing-key?keyid=nope", headers=h).status_code == 404
    (tmp_path / "key.pem").write_bytes(pub.data)

    def verify(body: bytes, sig: bytes) -> int:
        (tmp_path / "f").write_bytes(body)
        (tmp_path / "f.sig").write_bytes(sig)
        cmd = [sys.executable, "-m", "cityops", "verify", str(tmp_path / "f")]
        cmd += ["--signature", str(tmp_path / "f.sig"), "--public-key", str(tmp_path / "key.pem")]
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode

    for fmt in ("csv", "gpkg", "geojson"):
        r = client.get(f"/api/layers/water_pipes?limit=20&format={fmt}", headers=h)
        fields = dict(p.split("=", 1) for p in r.headers["X-Cityops-Signature-SM2"].split(","))
        assert fields["keyid"] == made["sm2"]
        sig = base64.b64decode(fields["sm2"])
        assert verify(r.data, sig) == 0, fmt
        tampered = bytearray(r.data)
        tampered[len(tampered) // 2] ^= 0x01
        assert verify(bytes(tampered), sig) == 1, fmt
    close_pools()


def test_the_api_takes_a_district_by_name_and_says_which_exist(
    client: FlaskClient, role_tokens: dict[str, str]
) -> None:
    planner = bearer(role_tokens["planner"])
    by_code = client.get("/api/query?layer=water_pipes&district=510104&limit=5000", headers=planner)
    by_name = client.get(
        "/api/query", query_string={"layer": "water_pipes", "district": "锦江区", "limit": 5000},
        headers=planner,
    )  # fmt: skip
    assert by_code.status_code == by_name.status_code == 200
    ids = sorted(f["id"] for f in by_code.get_json()["features"])
    assert ids and sorted(f["id"] for f in by_name.get_json()["features"]) == ids
    unknown = client.get(
        "/api/query", query_string={"layer": "water_pipes", "district": "天府区"}, headers=planner
    )
    assert unknown.status_code == 400 and "锦江区" in unknown.get_json()["error"]
