"""docker-compose.yml is kept valid and production-shaped (no Docker engine runs here)."""

import re

import yaml

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
        "gis-api",
    ):
        assert name in SERVICES, name
    for name in ("db", "mqtt", "ingest-1", "ingest-2", "dashboard", "gis-api"):
        assert SERVICES[name]["healthcheck"]["test"], name
    # the services that sign or decrypt read the keys, and nothing else does
    for name, svc in SERVICES.items():
        has_keys = "./deploy/secrets/keys:/keys:ro" in (svc.get("volumes") or [])
        assert has_keys == (name in ("alerts", "gis-api")), name
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


def test_broker_config_requires_auth_denies_by_default_and_keeps_data() -> None:
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "persistence true",
        "plugin /mosquitto/plugins/device_guard.so",
        "plugin /usr/lib/mosquitto_dynamic_security.so",
        "plugin_opt_config_file /mosquitto/secrets/dynamic-security.json",
        "autosave_interval 1",
    ):
        assert line in conf
    # the guard first: a plugin that answers ends the check (it may only narrow dynsec's)
    assert conf.index("device_guard.so") < conf.index("mosquitto_dynamic_security.so")
    dockerfile = (ROOT / SERVICES["mqtt"]["build"]["dockerfile"]).read_text()
    assert "device_guard.c" in dockerfile
    # the plain files let any client subscribe anywhere (a device could join ingestion's share)
    assert "password_file" not in conf and "acl_file" not in conf
    volumes = SERVICES["mqtt"]["volumes"]
    assert (
        "./deploy/secrets/dynamic-security.json:/mosquitto/secrets/dynamic-security.json" in volumes
    )


def test_the_deployments_identities_come_hashed_from_the_environment(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "CITYOPS_MQTT_ADMIN_PASSWORD": "a" * 32,
        "CITYOPS_MQTT_INGEST_PASSWORD": "i" * 32,
    }
    out = tmp_path / "dynsec.json"
    cmd = [sys.executable, "-m", "cityops", "devices", "bus-config", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "a" * 32 not in text and "i" * 32 not in text
    config = json.loads(text)
    assert {c["username"] for c in config["clients"]} == {"cityops-admin", "cityops-ingest"}
    assert config["defaultACLAccess"]["subscribe"] is False
    assert config["defaultACLAccess"]["publishClientSend"] is False
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    del env["CITYOPS_MQTT_INGEST_PASSWORD"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "cityops-ingest" in r.stderr


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
