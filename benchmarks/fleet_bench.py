"""Device fleet benchmark: prints figures, asserts nothing (CONVENTIONS.md 14). Decision 0034.

    .venv/bin/python benchmarks/fleet_bench.py                          # paho before, fleet now
    .venv/bin/python benchmarks/fleet_bench.py --only fleet --devices 1000,2000

Each simulated device has its own broker identity and connection (the ACL binds it to its
topic); every step publishes one QoS 1 message per device and flushes (every message
acknowledged). A subscriber counts what arrives. ``paho``: a paho Publisher and its network
thread per device (simulators.mqtt.DevicePublishers before decision 0034, kept here);
``fleet``: simulators.mqtt.DevicePublishers now (aiomqtt clients on one asyncio loop).

A private Mosquitto under var/bench-stack-fleet (the stack raises its soft open-file limit to the
hard one: at 1,024 it refused connections beyond about 1,000, "denied access by tcpd").
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from benchmarks.machine import machine_line  # noqa: E402
from cityops.kernel.clock import wait_until  # noqa: E402
from cityops.kernel.mqtt import Publisher  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402
from sensors.topics import parse_telemetry_topic, telemetry_topic  # noqa: E402
from simulators.devices import device_url, enrol_devices, make_credentials  # noqa: E402
from simulators.mqtt import DevicePublishers, client_id  # noqa: E402
from tests.listening import Recorder  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


class PahoDevicePublishers:
    """The device fleet before decision 0034: a paho Publisher (and its thread) per device."""

    def __init__(self, urls: dict[str, str], *, max_inflight: int = 20) -> None:
        self._urls, self._max_inflight = urls, max_inflight
        self._pubs: dict[str, Publisher] = {}

    def __enter__(self) -> PahoDevicePublishers:
        try:
            for sid, url in self._urls.items():
                pub = Publisher(url, client_id(f"dev-{sid}"[:40]), max_inflight=self._max_inflight)
                self._pubs[sid] = pub.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        self._pubs[parse_telemetry_topic(topic).sensor_id].publish(topic, payload, qos=qos)

    def flush(self, timeout_s: float = 30.0) -> None:
        for pub in self._pubs.values():
            pub.flush(timeout_s)

    def __exit__(self, *exc: object) -> None:
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            pub.__exit__(*exc)


def payload(step: int) -> bytes:
    return b'{"v":1,"ts":%d,"seq":%d,"q":{"pressure":350.0}}' % (
        1_764_115_200_000 + step * 60_000,
        step + 1,
    )


def bench(sink_class: type, urls: dict[str, str], steps: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with sink_class(urls) as pub:
        out = {"connect_s": time.perf_counter() - t0, "threads": threading.active_count()}
        out["rss_mb"] = rss_mb()
        t1, c1 = time.perf_counter(), time.process_time()
        for k in range(steps):
            for sid in urls:
                pub.publish(telemetry_topic("water", sid), payload(k))
            pub.flush()
        out["publish_s"] = time.perf_counter() - t1
        out["cpu_s"] = time.process_time() - c1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", default="100,250")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--only", default="paho,fleet")
    args = ap.parse_args()
    stack = LocalStack(ROOT / "var" / "bench-stack-fleet")
    stack.start_mosquitto()  # its soft open-file limit raised to the hard one (cityops.shell.stack)
    try:
        sizes = [int(x) for x in args.devices.split(",")]
        creds = make_credentials(f"fleet-wp-{i}" for i in range(max(sizes)))
        enrol_devices(stack.mqtt_url(), creds, replace=True)
        print(f"[{machine_line()}]")
        sinks = {"paho": PahoDevicePublishers, "fleet": DevicePublishers}
        for n in sizes:
            urls = {
                sid: device_url(stack.mqtt_url("cityops-sim"), sid, creds)
                for sid in list(creds)[:n]
            }
            for name in args.only.split(","):
                counter = Recorder(stack.mqtt_url("cityops-admin"), "city/+/+/telemetry")
                try:
                    r = bench(sinks[name], urls, args.steps)
                except TimeoutError as exc:
                    print(f"{name:6s} {n:5d} devices: {exc}")
                    continue
                finally:
                    want = n * args.steps
                    wait_until(lambda c=counter, w=want: len(c.snapshot()) >= w, 60)
                    time.sleep(0.3)  # anything more shows now
                    counter.close()
                msgs = n * args.steps
                print(
                    f"{name:6s} {n:5d} devices x {args.steps} steps: connect {r['connect_s']:.2f} s, "
                    f"{msgs:,} messages in {r['publish_s']:.2f} s = {msgs / r['publish_s']:,.0f} "
                    f"msg/s acknowledged (CPU {r['cpu_s']:.2f} s); {r['threads']:.0f} threads, "
                    f"RSS {r['rss_mb']:.0f} MB; arrived {len(counter.snapshot()):,}, "
                    f"distinct {len(set(counter.snapshot())):,}  [load {os.getloadavg()[0]:.1f}]",
                    flush=True,
                )
    finally:
        stack.stop_mosquitto()


if __name__ == "__main__":
    main()
