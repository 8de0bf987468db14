"""How long telemetry is kept by nobody after a broker restart (decision 0081).

    .venv/bin/python benchmarks/broker_restart_bench.py [--outages 0.5,2,5] [--repeats 3]

Mosquitto 2.0.11 does not save shared subscriptions in its persistence file, so after a restart
the ingest worker's session comes back without its subscription until the worker reconnects and
subscribes again. Meanwhile the broker acknowledges telemetry with "no matching subscribers"
(0x10) and keeps it for nobody. A publisher that honours the contract (docs/contracts/mqtt.md)
sends such messages again; one that does not (an MQTT 3.1.1 device cannot even see the reason)
loses them.

On a private stack (``var/bench-stack-restart``) one ingest worker runs in this process; a probe
device publishes a QoS 1 reading every 20 ms and records each PUBACK's reason code. For each
outage (broker stopped that long, then started) the run prints the window from the first
PUBACK after the restart to the first one that says a subscriber took the message, and the
probes acknowledged unrouted in it, beside the ceiling the worker's reconnect back-off implies.
Not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

import cityops.kernel.mqtt as mqtt_kernel  # noqa: E402
import cityops.shell.stack  # noqa: E402
from benchmarks.machine import describe_machine  # noqa: E402
from cityops.kernel.mqtt import NO_MATCHING_SUBSCRIBERS  # noqa: E402
from cityops.kernel.settings import Settings, parse_mqtt_url  # noqa: E402
from cityops.shell.database import prepare_database  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402
from ingestion.service import Ingestor  # noqa: E402
from sensors.payload import encode_reading  # noqa: E402
from sensors.topics import telemetry_topic  # noqa: E402

PROBE_EVERY_S = 0.02
SENSOR = "probe-restart"


class Probe:
    """A device publishing a reading every ``PROBE_EVERY_S`` at QoS 1 that reconnects within
    0.1-0.5 s; ``acks`` holds (monotonic time, routed) per PUBACK."""

    def __init__(self, url: str) -> None:
        ep = parse_mqtt_url(url)
        self.acks: list[tuple[float, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(ep.username, ep.password)
        self._client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self._client.on_publish = self._on_publish
        self._client.connect(ep.host, ep.port, keepalive=10)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.acks.append((time.monotonic(), reason_code != NO_MATCHING_SUBSCRIBERS))

    def _run(self) -> None:
        k = 0
        t0 = time.time_ns() // 1_000_000 - 3_600_000
        while not self._stop.wait(PROBE_EVERY_S):
            if self._client.is_connected():
                payload = encode_reading(t0 + k, k, {"pressure": 300.0})
                self._client.publish(telemetry_topic("water", SENSOR), payload, qos=1)
                k += 1

    def acks_since(self, t: float) -> list[tuple[float, bool]]:
        with self._lock:
            return [a for a in self.acks if a[0] >= t]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.disconnect()
        self._client.loop_stop()


def one_restart(stack: LocalStack, probe: Probe, outage_s: float) -> tuple[float, int]:
    """(seconds from the first PUBACK after the restart to the first routed one, unrouted)."""
    stack.stop_mosquitto()
    time.sleep(outage_s)
    t_up = time.monotonic()
    stack.start_mosquitto()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        acks = probe.acks_since(t_up)
        routed = [t for t, ok in acks if ok]
        if routed:
            unrouted = [t for t, ok in acks if not ok and t < routed[0]]
            return routed[0] - acks[0][0], len(unrouted)
        time.sleep(0.05)
    raise TimeoutError("no routed PUBACK within 30 s of the restart")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--outages", default="0.5,2,5", help="seconds the broker stays stopped")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--backoff",
        default=f"{mqtt_kernel.RECONNECT_MIN_S},{mqtt_kernel.RECONNECT_MAX_S}",
        help="the worker's reconnect back-off min,max [s] (before decision 0081: 1,10)",
    )
    ap.add_argument("--stack-dir", type=Path, default=ROOT / "var" / "bench-stack-restart")
    args = ap.parse_args()
    print("machine:")
    for k, v in describe_machine().items():
        print(f"  {k}: {v}")
    low, high = (float(x) for x in args.backoff.split(","))
    mqtt_kernel.RECONNECT_MIN_S, mqtt_kernel.RECONNECT_MAX_S = low, high
    print(f"  ingest reconnect back-off: {low:g} to {high:g} s")
    # restart on the ports the clients know (a port in TIME_WAIT would make the stack move)
    cityops.shell.stack.port_is_free = lambda port: True  # type: ignore[assignment]
    (args.stack_dir / "mosquitto" / "mosquitto.db").unlink(missing_ok=True)
    stack = LocalStack(args.stack_dir)
    stack.start()
    dbname = f"bench_restart_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{dbname}"')
        db_url = stack.admin_database_url(dbname)
        with psycopg.connect(db_url) as c:
            prepare_database(c, use_timescale=False)
            c.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
                " (%s, 'water', 'water_pressure', %s, 'SRID=4326;POINT(104.06 30.66)')",
                (SENSOR, SENSOR),
            )
        settings = Settings(
            database_url=db_url,
            mqtt_url=stack.mqtt_url("cityops-admin"),
            ingest_mqtt_url=stack.mqtt_url("cityops-ingest"),
            sim_mqtt_url=stack.mqtt_url("cityops-sim"),
        )
        ingestor = Ingestor(settings)
        ingestor.start()
        probe = Probe(settings.mqtt_url_for("sim"))
        time.sleep(1.0)
        ceiling = high + 1.0  # the longest back-off step, then CONNECT and SUBSCRIBE
        print(
            f"\n{'outage [s]':>10} {'window median [s]':>18} {'max [s]':>8} "
            f"{'unrouted (max)':>15} {'ceiling [s]':>12}"
        )
        try:
            for outage in (float(x) for x in args.outages.split(",")):
                runs = [one_restart(stack, probe, outage) for _ in range(args.repeats)]
                windows = [w for w, _ in runs]
                print(f"    each: {', '.join(f'{w:.2f} s ({n})' for w, n in runs)}")
                print(
                    f"{outage:>10.1f} {statistics.median(windows):>18.2f} {max(windows):>8.2f} "
                    f"{max(n for _, n in runs):>15d} {ceiling:>12.1f}",
                    flush=True,
                )
        finally:
            probe.close()
            ingestor.stop(end_session=True)
    finally:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        stack.stop()


if __name__ == "__main__":
    main()
