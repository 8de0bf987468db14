"""docker-compose.yml is kept valid and production-shaped (no Docker engine runs here)."""

import re

import yaml

from cityops.shell.stack import mosquitto_acl
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_one_service_per_part_with_health_checks() -> None:
    for name in (
        "db",
        "mqtt",
        "migrate",
        "ingest-1",
        "ingest-2",
        "alerts",
        "dashboard",
        "simulator",
    ):
        assert name in SERVICES, name
    for name in ("db", "mqtt", "ingest-1", "ingest-2", "dashboard"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert SERVICES["migrate"]["command"] == ["migrate"]
    for name in ("ingest-1", "ingest-2", "alerts", "dashboard"):
        assert (
            SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    assert "timescaledb" in SERVICES["db"]["image"]


def test_ingestion_workers_have_fixed_distinct_client_ids() -> None:
    ids = {SERVICES[n]["environment"]["CITYOPS_INGEST_CLIENT_ID"] for n in ("ingest-1", "ingest-2")}
    assert len(ids) == 2


def test_no_default_secrets() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for m in re.finditer(r"\$\{([A-Z_]+)([^}]*)\}", text):
        var, rest = m.groups()
        if "PASSWORD" in var:
            assert rest.startswith(":?"), f"{var} must be required, not defaulted"
    for svc in SERVICES.values():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key or "URL" in key:
                assert "${" in str(value) or "password" not in str(value).lower(), key


def test_broker_config_requires_auth_and_keeps_data() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "persistence true",
        "password_file",
        "acl_file",
        "autosave_interval 1",
    ):
        assert line in conf
    acl = (ROOT / "deploy/mosquitto/acl").read_text()
    assert mosquitto_acl() in acl


def test_each_service_gets_only_its_own_broker_identity() -> None:
    expected = {
        "ingest-1": "cityops-ingest",
        "ingest-2": "cityops-ingest",
        "alerts": "cityops-alerts",
        "simulator": "cityops-sim",
    }
    for name, svc in SERVICES.items():
        env = svc.get("environment") or {}
        urls = {k: v for k, v in env.items() if k.endswith("MQTT_URL")}
        if name in expected:
            assert len(urls) == 1 and f"mqtt://{expected[name]}:" in next(iter(urls.values())), name
        else:
            assert urls == {}, f"{name} needs no broker identity"
    assert "1883:1883" not in SERVICES["mqtt"].get("ports", [])
