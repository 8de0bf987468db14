"""A source loss reaches people (decision 0076, amended): it is listed where incidents are
(`cityops incidents list`, kind ``source_loss``), and its opening and closing go through the
outbox to the notification routes, once each, with a message that says what stopped and since
when. The engine as a process on the real broker and database, then the store and the routing
on the real database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from alerts.dispatch import Senders, deliver_once
from alerts.notify import Route, build_loss_email, build_loss_sms_request
from alerts.source_loss import SourceLoss, loss_notice
from alerts.stores.notifications import write_route
from alerts.stores.source_loss import write_losses
from cityops.kernel.clock import wait_until
from cityops.kernel.crypto import Keyring, generate_keys, load_keyring
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from tests.alerts.conftest import MIN, T0, EngineProcess, HttpSink
from tests.alerts.test_source_loss import publish_bank, register_fast_bank
from tests.conftest import run_cityops
from tests.listening import Recorder


def _rows(db_url: str, q: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(db_url) as conn:
        return conn.execute(q, args).fetchall()  # type: ignore[arg-type]


def _incidents(settings: Settings, *args: str) -> list[dict]:  # type: ignore[type-arg]
    r = run_cityops(settings, "incidents", "list", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _bodies(sink: HttpSink, path: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(body) for p, _headers, body in list(sink.requests) if p == path]


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink()
    yield s
    s.close()


def test_a_paused_bank_is_one_source_loss_incident_paged_once_on_open_and_once_on_close(
    db_url: str, settings: Settings, sink: HttpSink, tmp_path: Path
) -> None:
    """12 sensors of a 1-second type publish, pause, and publish again, with the engine as a
    process restarted during the pause. `cityops incidents list --json` shows one incident of
    kind source_loss (what stopped, since when, 12 of 12 sensors, no alert, no place, no
    customers); the webhook and the SMS gateway each get one notice when it opens and one
    when it closes (not again after the restart), in Chinese and English naming the stream
    and the time; the bus carries both on city/alerts/source_loss/<id>; no alert, no incident
    row."""
    ids = register_fast_bank(db_url, 12)
    keys = tmp_path / "keys"
    generate_keys(keys)
    ring = load_keyring(keys, environ={})
    with psycopg.connect(db_url, autocommit=True) as conn:
        write_route(conn, Route(0, "duty", "webhook", f"{sink.url}/loss"), ring)
        write_route(conn, Route(0, "sms", "sms", f"{sink.url}/sms", recipient="13800000000"), ring)
        # a route that takes only clears hears no source loss
        write_route(conn, Route(0, "clears", "webhook", f"{sink.url}/c", events=("cleared",)), ring)
    engine = EngineProcess(settings.model_copy(update={"keys_dir": str(keys)}))
    bus = Recorder(settings.mqtt_url, "city/alerts/source_loss/#")
    engine.start(30.0)
    pub = Publisher(settings.mqtt_url, "test-source-loss-incident-pub")
    pub.__enter__()
    try:
        publish_bank(pub, ids, 8.0)
        stopped = time.monotonic()
        assert wait_until(lambda: _bodies(sink, "/loss"), 20.0), engine.log()
        paged_s = time.monotonic() - stopped
        print(f"source loss paged {paged_s:.1f} s after the bank stopped")
        assert paged_s < 8.0  # overdue at 2 s, the clock every 1 s, the notifier every 0.5 s
        ((loss_id, since),) = _rows(db_url, "SELECT loss_id, since FROM source_losses")
        (opened,) = _bodies(sink, "/loss")
        assert (opened["event"], opened["kind"], opened["source_loss_id"]) == (
            "source_lost",
            "source_loss",
            loss_id,
        )
        assert (opened["scope"], opened["sensors"], opened["group_size"]) == ("stream", 12, 12)
        local = since.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
        assert f"全部数据流自 {local} 起无数据（12 个传感器中 12 个）" in opened["message_zh"]
        assert f"the whole data stream since {local} (12 of 12 sensors)" in opened["message_en"]
        assert wait_until(lambda: len(_bodies(sink, "/sms")) == 1, 10.0)
        (sms,) = _bodies(sink, "/sms")
        assert sms["text"].startswith("【城市运行】紧急：数据源中断：全部数据流")
        assert local in sms["text"] and sms["source_loss_id"] == loss_id

        (listed,) = _incidents(settings)
        assert {k: listed[k] for k in ("kind", "state", "incident_id", "source_loss_id")} == {
            "kind": "source_loss",
            "state": "open",
            "incident_id": None,
            "source_loss_id": loss_id,
        }
        assert (listed["scope"], listed["sensors"], listed["group_size"]) == ("stream", 12, 12)
        assert datetime.fromisoformat(listed["since"]) == since
        assert local in listed["explanation_zh"]
        # no customer figures: no alert, no place, no network context
        assert (listed["alert_count"], listed["lon"], listed["likely_location"]) == (0, None, None)
        table = run_cityops(settings, "incidents", "list", "--lang", "en")
        assert f"SL{loss_id}" in table.stdout and "source_loss" in table.stdout

        engine.stop()  # a restart during the loss: the loss is kept, nobody is paged again
        engine.start(30.0)
        time.sleep(3.0)  # the notifier runs every 0.5 s; the outbox sweep after 10 s
        assert len(_bodies(sink, "/loss")) == 1 and len(_bodies(sink, "/sms")) == 1

        # back, and kept reporting while the rest is checked (a bank that stops again after
        # the loss closed is a new loss)
        again = threading.Thread(target=publish_bank, args=(pub, ids, 25.0), daemon=True)
        again.start()
        assert wait_until(lambda: len(_bodies(sink, "/loss")) == 2, 20.0), engine.log()
        closed = _bodies(sink, "/loss")[1]
        assert (closed["event"], closed["source_loss_id"]) == ("source_back", loss_id)
        assert closed["ended_at"] is not None
        assert "数据源恢复：全部数据流" in closed["message_zh"]
        assert wait_until(lambda: len(_bodies(sink, "/sms")) == 2, 10.0)
        time.sleep(2.0)
        assert len(_bodies(sink, "/loss")) == 2 and len(_bodies(sink, "/sms")) == 2
        assert _bodies(sink, "/c") == []
        keys_sent = {h["Idempotency-Key"] for p, h, _b in sink.requests if p == "/loss"}
        assert len(keys_sent) == 2
        assert wait_until(lambda: len(bus.snapshot()) >= 2, 15.0)
        assert sorted(json.loads(b)["event"] for _t, b in bus.snapshot()) == [
            "source_back",
            "source_lost",
        ]
        assert {t for t, _b in bus.snapshot()} == {f"city/alerts/source_loss/{loss_id}"}

        (listed,) = _incidents(settings)
        assert (listed["kind"], listed["state"], listed["source_loss_id"]) == (
            "source_loss",
            "resolved",
            loss_id,
        )
        assert listed["resolved_at"] is not None
        assert _incidents(settings, "--state", "open") == []
        assert _rows(db_url, "SELECT kind, sensor_id FROM alerts") == []
        assert _rows(db_url, "SELECT incident_id FROM incidents") == []
        again.join()
    finally:
        pub.__exit__(None, None, None)
        bus.close()
        if engine.proc is not None:
            engine.stop()


def _loss(scope: str, value: str | None, n: int = 6) -> SourceLoss:
    return SourceLoss(scope, value, frozenset(f"s{i}" for i in range(n)), 8, T0, T0 + MIN)


def test_each_loss_is_announced_once_and_routed_by_utility_and_district(
    db_url: str, sink: HttpSink, keyring: Keyring
) -> None:
    """The store queues a loss's opening and closing once each, however often it is written
    (a restart writes an open loss again); a district's loss reaches every utility's route and
    the routes of its district, a utility's loss its utility's routes and every district's."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name, kw in [
            ("all", {}),
            ("water", {"utilities": ("water",)}),
            ("power", {"utilities": ("power",)}),
            ("jinjiang", {"districts": (510104,)}),
            ("qingyang", {"districts": (510105,)}),
        ]:
            write_route(conn, Route(0, name, "webhook", f"{sink.url}/{name}", **kw), keyring)  # type: ignore[arg-type]
        district = _loss("district", "510104")
        utility = _loss("utility", "power")
        assert len(write_losses(conn, [district, utility], "0/1")) == 2
        assert write_losses(conn, [district], "0/1") == []  # written again: no second notice
        deliver_once(conn, now=now, senders=Senders(keyring=keyring))
        by_path: dict[str, list[str]] = {}
        for p, _h, b in sink.requests:
            by_path.setdefault(p.strip("/"), []).append(json.loads(b)["scope"])
        assert {k: sorted(v) for k, v in by_path.items()} == {
            "all": ["district", "utility"],
            "water": ["district"],
            "power": ["district", "utility"],
            "jinjiang": ["district", "utility"],
            "qingyang": ["utility"],
        }
        sink.requests.clear()
        closed = write_losses(conn, [replace(district, ended_us=T0 + 9 * MIN)], "0/1")
        assert [e.topic.rsplit("/", 2)[1] for e in closed] == ["source_loss"]
        deliver_once(conn, now=now, senders=Senders(keyring=keyring))
        assert sorted(p.strip("/") for p, _h, _b in sink.requests) == [
            "all",
            "jinjiang",
            "power",
            "water",
        ]
        assert {json.loads(b)["event"] for _p, _h, b in sink.requests} == {"source_back"}
        events = conn.execute(
            "SELECT event, count(*) FROM alert_events WHERE source_loss_id IS NOT NULL"
            " GROUP BY event ORDER BY event"
        ).fetchall()
    assert events == [("source_back", 1), ("source_lost", 2)]


def test_the_e_mail_and_sms_of_a_loss_say_what_stopped_and_since_when() -> None:
    """Bilingual e-mail (subject in Chinese, both lines, the loss's id in a header, a stable
    Message-ID) and the SMS gateway's body, from the notice the store queues."""
    notice = loss_notice(_loss("district", "510104"), 7, "source_lost")
    assert notice.district_adcode == 510104 and notice.utility is None
    route = Route(1, "m", "email", "smtp://x", "duty@cd.gov.cn")
    msg = build_loss_email(route, notice, 42, "cityops@cd.gov.cn", datetime.now(UTC))
    assert msg["Subject"].startswith("[紧急/critical] 数据源中断 #7: 数据源中断：区县 510104")
    assert msg["X-Cityops-Source-Loss-Id"] == "7"
    assert msg["Message-ID"] == "<cityops-delivery-42@cityops.local>"
    body = msg.get_content()
    assert "自 2025-11-26 08:00:00 起无数据（8 个传感器中 6 个）" in body
    assert "the sensors of district 510104 since 2025-11-26 08:00:00 (6 of 8 sensors)" in body
    sms = build_loss_sms_request(Route(2, "s", "sms", "http://gw", "138"), notice, 43, 0)
    text = json.loads(sms.body)
    assert (text["to"], text["source_loss_id"], text["event"]) == ("138", 7, "source_lost")
    assert text["text"].startswith(
        "【城市运行】紧急：数据源中断：区县 510104 的传感器自 2025-11-26"
    )
