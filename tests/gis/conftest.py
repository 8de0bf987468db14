"""GIS fixtures: a database with districts, H3 cells and the demo city, cloned per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cityops.shell.stack import LocalStack
from gis.demo import DemoConfig, build_demo_city
from gis.grid import build_grid_cells
from gis.postgis import fetch_districts_frame, write_districts, write_grid_cells, write_layers
from tests.conftest import create_database, drop_database, seal_template

ROOT = Path(__file__).resolve().parents[2]
GIS_TEMPLATE_DB = "cityops_gis_template"
CENTRAL = (510104, 510105, 510106, 510107, 510108)  # the five central districts


def square(centre: tuple[float, float], half_side_deg: float) -> dict:
    """A GeoJSON Polygon: the square of ``2 * half_side_deg`` degrees round ``centre``."""
    x, y = centre
    d = half_side_deg
    ring = [[x - d, y - d], [x + d, y - d], [x + d, y + d], [x - d, y + d], [x - d, y - d]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture(scope="session")
def gis_template(stack: LocalStack, template_db: str) -> str:
    drop_database(stack, GIS_TEMPLATE_DB)
    with psycopg.connect(create_database(stack, GIS_TEMPLATE_DB, template_db)) as conn:
        doc = json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text(encoding="utf-8"))
        write_districts(conn, doc)
        d = fetch_districts_frame(conn)
        write_grid_cells(conn, build_grid_cells(d[d["adcode"].isin(CENTRAL)], (7, 8)))
        write_layers(conn, build_demo_city(DemoConfig()), demo=True)
        conn.commit()
    return seal_template(stack, GIS_TEMPLATE_DB)


@pytest.fixture
def gis_db(stack: LocalStack, gis_template: str) -> Iterator[str]:
    """A database of this test's own with districts, grid cells and the demo city loaded."""
    name = "g_" + uuid.uuid4().hex[:12]
    yield create_database(stack, name, gis_template)
    drop_database(stack, name)


@pytest.fixture
def gis_conn(gis_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(gis_db, autocommit=True) as conn:
        yield conn


# --- access: accounts and API tokens for the HTTP surfaces (docs/decisions/0071) ---------------
ROLE_USERS = {"admin": "gis-admin", "planner": "gis-planner", "emergency": "gis-emergency"}


def add_user(db: str, username: str, role: str) -> None:
    from access.accounts import write_user

    with psycopg.connect(db, autocommit=True) as conn:
        write_user(conn, username, "correct horse battery", role)


def issue_token(db: str, username: str, **options) -> str:
    """A new API token of ``username`` (created by the test as actor)."""
    from datetime import UTC, datetime

    from access.tokens import write_token

    with psycopg.connect(db, autocommit=True) as conn:
        secret, _ = write_token(
            conn,
            username,
            options.pop("name", "test"),
            actor="test",
            now=datetime.now(UTC),
            **options,
        )
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def role_tokens(gis_db: str) -> dict[str, str]:
    """role -> a token of an account of that role (admin, planner, emergency)."""
    tokens = {}
    for role, user in ROLE_USERS.items():
        add_user(gis_db, user, role)
        tokens[role] = issue_token(gis_db, user)
    return tokens


@pytest.fixture
def admin_token(role_tokens: dict[str, str]) -> str:
    return role_tokens["admin"]
