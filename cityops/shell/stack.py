"""A private PostgreSQL (PostGIS, TimescaleDB where installed) and Mosquitto for one machine.

Used by ``cityops up`` and by the test suite. Everything lives under one folder (``var/stack`` by
default); servers listen on 127.0.0.1 only, on free ports remembered between runs. PostgreSQL
refuses to run as root, so as root both servers run as the ordinary user ``cityops``.
Secrets (database and broker passwords) are random per stack and kept in ``secrets.json`` (0600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from access.bus import build_dynsec_config
from access.certificates import DeviceCA
from cityops.kernel.clock import wait_until
from cityops.kernel.crypto import generate_keys, read_active
from cityops.kernel.settings import Settings
from cityops.shell.paths import PROJECT_ROOT

SERVICE_USER = "cityops"
DB_NAME = "cityops"
# broker identities of the services; devices get their own (docs/contracts/mqtt.md)
MQTT_USERS = (
    "cityops-ingest",
    "cityops-alerts",
    "cityops-sim",
    "cityops-dashboard",
    "cityops-admin",
)


def _run(
    cmd: list[str], *, as_user: str | None = None, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``port``; a port in TIME_WAIT after our own server stopped
    counts as free, so a restarted server keeps its port and its clients find it again."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout_s: float) -> bool:
    def listening() -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return bool(wait_until(listening, timeout_s, interval_s=0.1))


def postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise FileNotFoundError("PostgreSQL server binaries not found: run ./run install")
    return candidates[0].parent


def timescaledb_installed() -> bool:
    """True when the PostgreSQL server found here has the TimescaleDB extension (``./run``
    builds it from its source release where it is missing)."""
    try:
        sharedir = _run([str(postgres_bindir() / "pg_config"), "--sharedir"]).stdout.strip()
    except (FileNotFoundError, subprocess.CalledProcessError):
        return False
    return (Path(sharedir) / "extension" / "timescaledb.control").exists()


def ensure_service_user() -> str | None:
    """The user the servers run as: ourselves, or ``cityops`` when we are root."""
    if os.geteuid() != 0:
        return None
    if _run(["id", "-u", SERVICE_USER], check=False).returncode != 0:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ]
        )
    return SERVICE_USER


def default_stack_dir(project_root: Path, name: str = "stack") -> Path:
    """``<project>/var/<name>``, unless the servers' user could not reach it (a checkout under
    /root, say): then a folder under /var/tmp named after the project's path."""
    preferred = project_root.resolve() / "var" / name
    if os.geteuid() != 0 or all(p.stat().st_mode & 0o001 for p in preferred.parents if p.exists()):
        return preferred
    import hashlib

    digest = hashlib.sha1(str(project_root.resolve()).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"cityops-{digest}" / name


@dataclass
class StackState:
    pg_port: int
    mqtt_port: int
    pg_password: str
    mqtt_passwords: dict[str, str]
    mqtt_tls_port: int = 0  # devices with client certificates (0: not chosen yet)

    @classmethod
    def load_or_create(cls, path: Path) -> StackState:
        if path.exists():
            data = json.loads(path.read_text())
            state = cls(**data)
            if not state.mqtt_tls_port:  # a stack made before the TLS listener
                state.mqtt_tls_port = free_port()
                state.save(path)
            return state
        state = cls(
            pg_port=free_port(),
            mqtt_port=free_port(),
            pg_password=secrets.token_urlsafe(24),
            mqtt_passwords={u: secrets.token_urlsafe(24) for u in MQTT_USERS},
            mqtt_tls_port=free_port(),
        )
        state.save(path)
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)


# publishes per second one device may send; beyond it they are refused as a flood (a sensor
# sends one reading every few seconds; a replay at simulated speed stays under this)
DEVICE_MAX_RATE = 50

# Every connection authenticates, on the socket as over TCP (no "trust": any local account
# could otherwise connect as the superuser and run commands as the servers' user)
PG_HBA = """# written by cityops.shell.stack at every start
local   all all                scram-sha-256
host    all all 127.0.0.1/32   scram-sha-256
host    all all ::1/128        scram-sha-256
"""


def stack_environment(root: Path, state: StackState) -> dict[str, str]:
    """The CITYOPS_* variables that point a service or a command at the stack in ``root``."""
    base = f"127.0.0.1:{state.mqtt_port}"
    urls = {u: f"mqtt://{u}:{state.mqtt_passwords[u]}@{base}" for u in state.mqtt_passwords}
    return {
        "CITYOPS_DATABASE_URL": f"postgresql://postgres:{state.pg_password}@127.0.0.1:{state.pg_port}/{DB_NAME}",
        "CITYOPS_MQTT_URL": urls["cityops-admin"],
        "CITYOPS_INGEST_MQTT_URL": urls["cityops-ingest"],
        "CITYOPS_ALERTS_MQTT_URL": urls["cityops-alerts"],
        "CITYOPS_SIM_MQTT_URL": urls["cityops-sim"],
        "CITYOPS_DEVICE_CA_DIR": str(root / "device-ca"),
        "CITYOPS_KEYS_DIR": str(root / "keys"),
    }


def existing_stack_environment(root: Path) -> dict[str, str] | None:
    """The variables for a stack that `cityops up` made in ``root``, or None where there is
    none (or its secrets are not ours to read: they are 0600)."""
    try:
        state = StackState(**json.loads((root / "secrets.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return stack_environment(root, state)


def commands_stack_dir() -> Path:
    """The stack the commands talk to: ``CITYOPS_STACK_DIR`` (a stack started with `cityops up
    --stack-dir DIR`), else this checkout's."""
    named = os.environ.get("CITYOPS_STACK_DIR")
    return Path(named) if named else default_stack_dir(PROJECT_ROOT)


def adopt_stack_environment() -> bool:
    """A command run from this checkout with no CITYOPS_DATABASE_URL takes the settings of the
    stack `cityops up` runs here (read from its 0600 secrets: no password in a command's
    arguments), so that every part's commands (gis, tokens, ...) find it; variables already set
    win. True when a stack's settings were taken."""
    if os.environ.get("CITYOPS_DATABASE_URL"):
        return False
    env = existing_stack_environment(commands_stack_dir())
    if env is None:
        return False
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return True


def command_settings() -> Settings:
    """A command's settings: the environment's; without CITYOPS_DATABASE_URL, those of the
    private stack that `cityops up` runs from this checkout (read from its 0600 secrets, so
    that no password goes into the environment or a command's arguments)."""
    if os.environ.get("CITYOPS_DATABASE_URL"):
        return Settings()
    env = existing_stack_environment(commands_stack_dir())
    if env is None:
        return Settings()
    return Settings(**{k.removeprefix("CITYOPS_").lower(): v for k, v in env.items()})


class LocalStack:
    def __init__(self, root: Path, *, log: Callable[[str], None] = lambda _m: None) -> None:
        self.root = root.resolve()
        self.log = log
        self.user = ensure_service_user()
        self.state = StackState.load_or_create(self.root / "secrets.json")
        self.pg_data = self.root / "pg" / "data"
        self.pg_run = self.root / "pg" / "run"
        self.mqtt_dir = self.root / "mosquitto"
        self.device_ca = DeviceCA(
            self.root / "device-ca"
        )  # its key stays out of the broker's reach
        self.device_max_rate = DEVICE_MAX_RATE
        self._mosquitto: subprocess.Popen[bytes] | None = None

    # -- URLs ---------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"postgresql://postgres:{self.state.pg_password}@127.0.0.1:{self.state.pg_port}/{DB_NAME}"

    def admin_database_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.state.pg_password}@127.0.0.1:{self.state.pg_port}/{dbname}"

    def mqtt_url(self, user: str = "cityops-admin") -> str:
        return f"mqtt://{user}:{self.state.mqtt_passwords[user]}@127.0.0.1:{self.state.mqtt_port}"

    def environment(self) -> dict[str, str]:
        """The CITYOPS_* variables that point every service at this stack."""
        return stack_environment(self.root, self.state)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        self.ensure_keys()
        self.start_postgres()
        self.start_mosquitto()

    def ensure_keys(self) -> None:
        """The SM2 signing and SM4 data keys (docs/security.md), made at the first start and
        readable by the services' user only (0600 files in a 0700 folder)."""
        keys = self.root / "keys"
        if not read_active(keys):
            generate_keys(keys)
            self.log(f"made SM2 and SM4 keys in {keys}")
        if self.user:
            for path in (keys, *keys.iterdir()):
                shutil.chown(path, self.user, self.user)

    def stop(self) -> None:
        self.stop_mosquitto()
        self.stop_postgres()

    def _own(self, path: Path) -> None:
        if self.user:
            shutil.chown(path, self.user, self.user)
            # the servers must reach their folder: every parent needs o+x
            for parent in path.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise PermissionError(
                        f"{parent} is not traversable by user {self.user}; "
                        "put the stack elsewhere with --stack-dir (for example under /var/tmp)"
                    )

    # -- PostgreSQL ---------------------------------------------------------------------
    def postgres_running(self) -> bool:
        bindir = postgres_bindir()
        if not (self.pg_data / "PG_VERSION").exists():
            return False
        r = _run(
            [str(bindir / "pg_ctl"), "-D", str(self.pg_data), "status"],
            as_user=self.user,
            check=False,
        )
        return r.returncode == 0

    def start_postgres(self) -> None:
        if not (self.pg_data / "PG_VERSION").exists():
            self._initdb()
        if self.postgres_running():
            self.log("PostgreSQL already running")
            return
        if not port_is_free(self.state.pg_port):
            self.state.pg_port = free_port()
            self.state.save(self.root / "secrets.json")
        self._write_postgres_config()
        self.log(f"starting PostgreSQL on 127.0.0.1:{self.state.pg_port}")
        pg_ctl = [str(postgres_bindir() / "pg_ctl"), "-D", str(self.pg_data)]
        log = ["-l", str(self.root / "pg" / "server.log")]
        _run(
            [*pg_ctl, *log, "-w", "-t", "60", "-o", f"-p {self.state.pg_port}", "start"],
            as_user=self.user,
        )
        self._create_database()

    def _initdb(self) -> None:
        """A new cluster whose superuser has the stack's password (passed in a 0600 file, never
        in the arguments) and where every connection authenticates."""
        self.log("initialising PostgreSQL cluster")
        for d in (self.pg_data.parent, self.pg_run):
            d.mkdir(parents=True, exist_ok=True)
            self._own(d)
        pwfile = self.root / "pg" / ".pw"
        pwfile.write_text(self.state.pg_password + "\n")
        os.chmod(pwfile, 0o600)
        if self.user:
            shutil.chown(pwfile, self.user, self.user)
        initdb = [str(postgres_bindir() / "initdb"), "-D", str(self.pg_data), "-U", "postgres"]
        options = ["-E", "UTF8", "--locale=C.UTF-8", f"--pwfile={pwfile}"]
        auth = ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
        try:
            _run([*initdb, *options, *auth], as_user=self.user)
        finally:
            pwfile.unlink()

    def _write_postgres_config(self) -> None:
        """Written at every start: a stack made before TimescaleDB was installed preloads it
        now, and one made when the socket still trusted every local user is closed."""
        for name, text in (
            ("postgresql.auto.conf", self._postgres_conf()),
            ("pg_hba.conf", PG_HBA),
        ):
            path = self.pg_data / name
            path.write_text(text)
            os.chmod(path, 0o600)
            if self.user:
                shutil.chown(path, self.user, self.user)
        self.pg_run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pg_run, 0o700)  # the socket's folder: the servers' user only

    def _postgres_conf(self) -> str:
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.pg_run}'",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
            "shared_buffers = '512MB'",
            "max_connections = 200",
            "max_wal_size = '2GB'",
            "checkpoint_timeout = '15min'",
            "synchronous_commit = on",
            "timezone = 'UTC'",
            "log_min_messages = warning",
        ]
        if timescaledb_installed():
            lines += [
                "shared_preload_libraries = 'timescaledb'",
                "timescaledb.telemetry_level = off",  # an isolated government network
                # one scheduler per database with the extension, plus the jobs it starts
                # (refresh, compression, retention); the test suite has a few databases at once
                "timescaledb.max_background_workers = 24",
                "max_worker_processes = 40",
            ]
        return "\n".join(lines) + "\n"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            self.admin_database_url(), autocommit=True, connect_timeout=10
        ) as conn:
            if (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
                is None
            ):
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def stop_postgres(self) -> None:
        if self.postgres_running():
            self.log("stopping PostgreSQL")
            _run(
                [
                    str(postgres_bindir() / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                as_user=self.user,
                check=False,
            )

    def kill_postgres(self) -> None:
        """Stop the database abruptly (fault tests)."""
        pidfile = self.pg_data / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    # -- Mosquitto ----------------------------------------------------------------------
    def write_mosquitto_config(self) -> Path:
        """The broker's configuration and its identities (dynamic-security plugin, decision
        0073): the services' passwords from the stack's secrets, the devices enrolled at run
        time (``cityops devices``) kept from the file the plugin saved."""
        self.mqtt_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.mqtt_dir)
        identities = self.mqtt_dir / "dynamic-security.json"
        existing = json.loads(identities.read_text()) if identities.exists() else None
        # hashed here (PBKDF2-SHA512) rather than by a tool that takes passwords in its
        # arguments, which every local user can read in the process list
        tmp = identities.with_suffix(".tmp")
        tmp.write_text(json.dumps(build_dynsec_config(self.state.mqtt_passwords, existing)))
        os.chmod(tmp, 0o600)
        tmp.replace(identities)
        guard = build_device_guard(self.mqtt_dir)
        tls = self._write_broker_tls()
        conf = self.mqtt_dir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(self.state, self.mqtt_dir, tls, guard, self.device_max_rate))
        for f in (identities, conf, *tls.iterdir()):
            if self.user:
                shutil.chown(f, self.user, self.user)
            os.chmod(f, 0o600)
        return conf

    def _write_broker_tls(self) -> Path:
        """The TLS listener's files: the device CA's certificate and CRL (copied: the broker
        never reads the CA's directory) and a server certificate issued once."""
        if not self.device_ca.exists():
            self.device_ca.create()
        tls = self.mqtt_dir / "tls"
        tls.mkdir(exist_ok=True)
        if not (tls / "server.crt").exists():
            self.device_ca.issue_server(tls)
        shutil.copyfile(self.device_ca.cert_path, tls / "ca.crt")
        shutil.copyfile(self.device_ca.crl_path, tls / "crl.pem")
        self._own(tls)
        return tls

    def start_mosquitto(self) -> None:
        if self._mosquitto and self._mosquitto.poll() is None:
            return
        if not port_is_free(self.state.mqtt_port):
            self.state.mqtt_port = free_port()
            self.state.save(self.root / "secrets.json")
        self._kill_stale_mosquitto()
        conf = self.write_mosquitto_config()
        self.log(f"starting Mosquitto on 127.0.0.1:{self.state.mqtt_port}")
        # one descriptor per connection, and a device fleet has thousands: the soft limit a
        # runuser session gets (1,024) made Mosquitto refuse clients beyond about 1,000
        # ("denied access by tcpd"), so the broker raises it to the hard limit first
        cmd = ["sh", "-c", 'ulimit -n "$(ulimit -Hn)"; exec mosquitto -c "$1"', "sh", str(conf)]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        log_path = self.mqtt_dir / "mosquitto.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the process
        if self.user:
            shutil.chown(log_path, self.user, self.user)
        self._mosquitto = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_for_port(self.state.mqtt_port, 15):
            raise RuntimeError(f"Mosquitto did not start; see {self.mqtt_dir / 'mosquitto.log'}")

    def _kill_stale_mosquitto(self) -> None:
        """A broker left behind by a process that died without stopping it."""
        pidfile = self.mqtt_dir / "mosquitto.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ValueError, OSError):
            return
        if b"mosquitto" in cmdline and str(self.mqtt_dir).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)

    def stop_mosquitto(self, *, kill: bool = False) -> None:
        proc = self._mosquitto
        if proc is None or proc.poll() is not None:
            return
        self.log("stopping Mosquitto")
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self._mosquitto = None


def mosquitto_conf(
    state: StackState, directory: Path, tls: Path, guard: Path, device_max_rate: int
) -> str:
    """Broker settings that keep data (docs/decisions/0003-broker-settings.md) and admit only
    known identities, each to its own topics (decision 0073)."""
    return f"""# written by cityops.shell.stack; edit cityops/shell/stack.py instead
listener {state.mqtt_port} 127.0.0.1
# devices with a client certificate from the stack's CA: its common name is the username
listener {state.mqtt_tls_port} 127.0.0.1
cafile {tls / "ca.crt"}
certfile {tls / "server.crt"}
keyfile {tls / "server.key"}
crlfile {tls / "crl.pem"}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
allow_anonymous false
pid_file {directory / "mosquitto.pid"}
# devices: refusals of foreign topics, subscriptions and floods become security events
plugin {guard}
plugin_opt_max_rate {device_max_rate}
# identities and ACLs (default deny, subscriptions included): access/bus.py
plugin {dynsec_plugin()}
plugin_opt_config_file {directory / "dynamic-security.json"}
persistence true
persistence_location {directory}/
autosave_interval 1
# queued QoS 1 messages per offline or slow client: peak rate x longest database outage survived
max_queued_messages 2000000
max_queued_bytes 0
max_inflight_messages 1000
max_packet_size 1048576
# small packets (a reading, a PUBACK) go out at once: with Nagle's algorithm and delayed ACKs
# a QoS 1 round trip waited up to 40 ms (measured: alert events' PUBACK 22-48 ms)
set_tcp_nodelay true
# the broker's own file logging flushes every line (its stdout is block-buffered in a file)
log_dest file {directory / "mosquitto.log"}
log_type error
log_type warning
log_type notice
"""


DEVICE_GUARD_SOURCE = PROJECT_ROOT / "deploy" / "mosquitto" / "device_guard.c"


def build_device_guard(directory: Path) -> Path:
    """The device guard plugin (deploy/mosquitto/device_guard.c), compiled into ``directory``
    when missing or older than its source (gcc and Debian's mosquitto-dev, from ./run)."""
    target = directory / "device_guard.so"
    if target.exists() and target.stat().st_mtime >= DEVICE_GUARD_SOURCE.stat().st_mtime:
        return target
    tmp = directory / "device_guard.so.tmp"
    cmd = ["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp), str(DEVICE_GUARD_SOURCE)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"could not build the broker's device guard (./run install): {r.stderr}")
    os.chmod(tmp, 0o755)
    tmp.replace(target)
    return target


DYNSEC_PLUGIN_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
)


def dynsec_plugin() -> Path:
    """Where Mosquitto's dynamic-security plugin is (Debian: package mosquitto itself)."""
    for d in DYNSEC_PLUGIN_DIRS:
        path = Path(d) / "mosquitto_dynamic_security.so"
        if path.exists():
            return path
    raise RuntimeError(
        "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is missing"
    )
