"""``cityops keys``, ``cityops verify`` and ``cityops audit verify`` as an operator and a
receiver run them: real subprocesses, the test's own PostgreSQL database and key directory."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.api import acknowledge_alert, assign_alert, comment_alert
from alerts.engine import AlertChange, Evaluation
from alerts.notify import Route
from alerts.stores.batch import write_evaluation
from alerts.stores.notifications import write_route
from alerts.stores.times import us_from_ts
from cityops.kernel.crypto import (
    SECURITY_AUDIT_CHAIN,
    append_chained,
    load_keyring,
    sm2_public_path,
    verify_chain,
)
from cityops.kernel.settings import Settings
from tests.alerts.conftest import add_sensors
from tests.conftest import ROOT, cityops_cmd, settings_env

T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _cityops(settings: Settings, keys: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**settings_env(settings), "CITYOPS_KEYS_DIR": str(keys)}
    env.pop("CITYOPS_SM4_KEY", None)
    return subprocess.run(
        cityops_cmd(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _listed(settings: Settings, keys: Path) -> dict[str, tuple[str, str]]:
    r = _cityops(settings, keys, "keys", "list")
    assert r.returncode == 0, r.stderr
    return {line.split()[1]: (line.split()[0], line.split()[2]) for line in r.stdout.splitlines()}


def test_keys_generate_rotate_reencrypt_revoke(settings: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    r = _cityops(settings, keys, "keys", "generate")
    assert r.returncode == 0, r.stderr
    first = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}
    assert set(first) == {"sm2", "sm4"}
    assert _listed(settings, keys) == {
        first["sm2"]: ("sm2", "active"),
        first["sm4"]: ("sm4", "active"),
    }
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        route = Route(0, "ops", "webhook", "http://127.0.0.1:9/hook", secret="k3y")
        write_route(conn, route, load_keyring(keys, environ={}))

    r = _cityops(settings, keys, "keys", "rotate", "--kind", "sm4")
    assert r.returncode == 0, r.stderr
    new_sm4 = r.stdout.split()[1]
    assert _listed(settings, keys) == {
        first["sm2"]: ("sm2", "active"),
        first["sm4"]: ("sm4", "kept"),
        new_sm4: ("sm4", "active"),
    }
    # the old data key still encrypts the route's two values: revoking it is refused
    r = _cityops(settings, keys, "keys", "revoke", first["sm4"])
    assert r.returncode == 1 and "2 stored secrets still use" in r.stderr
    r = _cityops(settings, keys, "keys", "revoke", new_sm4)
    assert r.returncode == 1 and "is active" in r.stderr
    r = _cityops(settings, keys, "keys", "reencrypt")
    assert r.returncode == 0, r.stderr
    assert f"1 of 1 re-encrypted with {new_sm4}" in r.stdout
    r = _cityops(settings, keys, "keys", "revoke", first["sm4"])
    assert r.returncode == 0, r.stderr
    assert not (keys / f"sm4-data-{first['sm4']}.key").exists()
    assert _listed(settings, keys)[first["sm4"]] == ("sm4", "revoked")
    with psycopg.connect(settings.database_url) as conn:
        target, secret = conn.execute("SELECT target, secret FROM notification_routes").fetchone()
    assert target.startswith(f"sm4gcm:v1:{new_sm4}:") and secret.startswith(f"sm4gcm:v1:{new_sm4}:")

    r = _cityops(settings, keys, "keys", "export-public")
    assert r.returncode == 0, r.stderr
    assert r.stdout == sm2_public_path(keys, first["sm2"]).read_text()
    assert "PRIVATE" not in r.stdout

    # a private key made readable by others stops every command that loads the key ring
    (keys / f"sm4-data-{new_sm4}.key").chmod(0o644)
    r = _cityops(settings, keys, "keys", "reencrypt")
    assert r.returncode == 1 and "chmod 600" in r.stderr


def test_verify_good_tampered_and_foreign_signatures(settings: Settings, tmp_path: Path) -> None:
    keys, foreign = tmp_path / "keys", tmp_path / "foreign"
    assert _cityops(settings, keys, "keys", "generate").returncode == 0
    assert _cityops(settings, foreign, "keys", "generate", "--kind", "sm2").returncode == 0
    export = tmp_path / "valves.csv"
    export.write_text("valve_id,district\nV-1,510104\n", encoding="utf-8")
    r = _cityops(settings, keys, "keys", "sign", str(export))
    assert r.returncode == 0, r.stderr
    sig = Path(r.stdout.strip())
    public = tmp_path / "cityops.pub.pem"
    assert _cityops(settings, keys, "keys", "export-public", "--out", str(public)).returncode == 0
    other = tmp_path / "other.pub.pem"
    assert _cityops(settings, foreign, "keys", "export-public", "--out", str(other)).returncode == 0

    def verify(key: Path) -> subprocess.CompletedProcess[str]:
        args = ("verify", str(export), "--signature", str(sig), "--public-key", str(key))
        return _cityops(settings, tmp_path / "none", *args)

    ok = verify(public)
    assert ok.returncode == 0 and "signature OK" in ok.stdout, ok.stderr
    assert verify(other).returncode == 1
    export.write_text("valve_id,district\nV-2,510104\n", encoding="utf-8")
    bad = verify(public)
    assert bad.returncode == 1 and "does NOT verify" in bad.stderr


def _audited_history(db_url: str) -> list[int]:
    """Alert actions and security events in both chains; returns the alert_audit ids."""
    add_sensors(db_url, [("gd-a1", "gas", "gas_detector")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        ch = AlertChange(
            "raised", "gd-a1", "gas", "gas_concentration", "threshold_high", "critical",
            35.0, 20.0, us_from_ts(T), "燃气浓度超限", "gas above limit",
        )  # fmt: skip
        alert_id = write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id
        acknowledge_alert(conn, alert_id, "zhang.wei", "on my way", now=T + timedelta(minutes=1))
        assign_alert(conn, alert_id, "zhang.wei", "crew-7", now=T + timedelta(minutes=2))
        for i in range(3):
            comment_alert(conn, alert_id, "li.na", f"update {i}", now=T + timedelta(minutes=3 + i))
        append_chained(
            conn,
            SECURITY_AUDIT_CHAIN,
            [
                (T, "admin", "token.create", "qgis", Jsonb({"role": "planner"})),
                (T + timedelta(seconds=1), "li.na", "export", "pipes", Jsonb({"rows": 13646})),
            ],
        )
        return [r[0] for r in conn.execute("SELECT audit_id FROM alert_audit ORDER BY audit_id")]


def _behind_the_trigger(db_url: str, *statements: tuple[str, tuple[int, ...]]) -> None:
    """Edits that the append-only trigger refuses, made as a superuser who disables it."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute("ALTER TABLE alert_audit DISABLE TRIGGER alert_audit_no_update")
        for statement, params in statements:
            conn.execute(statement, params)
        conn.execute("ALTER TABLE alert_audit ENABLE TRIGGER alert_audit_no_update")


MOVE = "UPDATE alert_audit SET audit_id = %s WHERE audit_id = %s"


@pytest.mark.parametrize("tamper", ["update", "delete", "swap", "delete_newest"])
def test_audit_verify_finds_the_first_broken_entry(
    settings: Settings, tmp_path: Path, tamper: str
) -> None:
    ids = _audited_history(settings.database_url)
    assert len(ids) == 6
    r = _cityops(settings, tmp_path, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "alert_audit: 6 entries, chain intact",
        "security_audit: 2 entries, chain intact",
        "dashboard_audit: 0 entries, chain intact",
    ]
    a, b, c = ids[2], ids[3], ids[4]
    if tamper == "update":
        _behind_the_trigger(
            settings.database_url,
            ("UPDATE alert_audit SET comment = 'nothing to see' WHERE audit_id = %s", (b,)),
        )
        expected = f"entry {b} was edited"
    elif tamper == "delete":
        _behind_the_trigger(
            settings.database_url, ("DELETE FROM alert_audit WHERE audit_id = %s", (b,))
        )
        expected = f"entry {c} does not follow the entry before it: its predecessor was removed"
    elif tamper == "swap":  # entries a and b trade places (ids), each intact on its own
        _behind_the_trigger(
            settings.database_url,
            (MOVE, (-1, a)),
            (MOVE, (a, b)),
            (MOVE, (b, -1)),
        )
        expected = f"entry {a} is out of order: its predecessor is now entry {b}"
    else:
        _behind_the_trigger(
            settings.database_url, ("DELETE FROM alert_audit WHERE audit_id >= %s", (ids[4],))
        )
        expected = f"entry {ids[3]} is the last left, but the chain's head is entry {ids[5]}"
    r = _cityops(settings, tmp_path, "audit", "verify")
    assert r.returncode == 1, r.stdout + r.stderr
    first, second, third = r.stdout.splitlines()
    assert first.startswith(f"alert_audit: BROKEN: {expected}"), first
    assert second == "security_audit: 2 entries, chain intact"
    assert third == "dashboard_audit: 0 entries, chain intact"


def test_security_audit_rows_written_without_the_chain_are_reported(
    settings: Settings, tmp_path: Path
) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        append_chained(
            conn, SECURITY_AUDIT_CHAIN, [(T, "admin", "token.create", "qgis", Jsonb({}))]
        )
        row = conn.execute(
            "INSERT INTO security_audit (at, actor, action) VALUES (now(), 'x', 'export')"
            " RETURNING id"
        ).fetchone()
    r = _cityops(settings, tmp_path, "audit", "verify")
    assert r.returncode == 1
    assert f"security_audit: BROKEN: entry {row[0]} is not chained" in r.stdout


def test_appends_one_entry_per_transaction_all_chain(settings: Settings) -> None:
    """One entry per transaction, as staff actions come: every entry chained and the chain
    intact (the cost per entry: benchmarks/security_bench.py)."""
    n = 100
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for i in range(n):
            append_chained(
                conn, SECURITY_AUDIT_CHAIN, [(T, "bench", "export", str(i), Jsonb({"i": i}))]
            )
        assert verify_chain(conn, SECURITY_AUDIT_CHAIN) == n
    with psycopg.connect(settings.database_url) as conn:
        chained = conn.execute(
            "SELECT count(*) FROM security_audit WHERE hash <> '' AND hash_alg = 'sm3'"
        ).fetchone()
    assert chained == (n,)


def test_logins_are_chained_and_an_upgraded_tables_history_is_skipped(
    settings: Settings, tmp_path: Path
) -> None:
    """Logins and refusals (dashboard_audit) are a chain too; rows written before the chain
    began (an upgrade from 0.1.0) are not covered and not reported as broken."""
    from access.accounts import login, write_user

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dashboard_audit (at, username, action) VALUES (%s, 'old', 'login')", (T,)
        )
        write_user(conn, "li.na", "Correct-horse-9", "operator")
        assert login(conn, "li.na", "wrong password", "10.0.0.9", T)[1] == "failed"
        assert login(conn, "li.na", "Correct-horse-9", "10.0.0.9", T)[1] == "ok"
    r = _cityops(settings, tmp_path, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dashboard_audit: 2 entries, chain intact" in r.stdout.splitlines()
    with psycopg.connect(settings.database_url) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # no triggers: a superuser
        conn.execute("UPDATE dashboard_audit SET action = 'login' WHERE action = 'login_failed'")
    r = _cityops(settings, tmp_path, "audit", "verify")
    assert r.returncode == 1
    assert any(
        x.startswith("dashboard_audit: BROKEN: entry") and "was edited" in x
        for x in r.stdout.splitlines()
    ), r.stdout
