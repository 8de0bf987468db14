"""The admin page's device credentials, on the real dashboard server and broker: an admin lists,
disables, enables and revokes a device (audited, effective at once); nobody else may."""

from __future__ import annotations

import json
import uuid

import psycopg

from access.bus import BusAdmin
from cityops.shell.stack import LocalStack
from simulators.devices import enrol_devices, make_credentials
from tests.cityops.test_bus_identity import connack
from tests.dashboards.helpers import call_callback, callback_status, http_login


def _list(opener, base: str, wanted: str) -> dict:
    values = {"admin-devices-changed.data": 1, "admin-devices-filter.value": wanted}
    values["lang.data"] = "en"
    return call_callback(opener, base, "admin-devices-filter", values, "admin-devices-filter.value")


def _act(opener, base: str, action: str, device: str) -> dict:
    values = {f"admin-{action}.n_clicks": 1, "admin-device.value": device}
    values |= {"admin-devices-changed.data": 0, "lang.data": "en"}
    return call_callback(opener, base, f"admin-{action}", values, f"admin-{action}.n_clicks")


def test_an_admin_disables_enables_and_revokes_a_device(
    dash_server, dash_db, users, stack: LocalStack
) -> None:
    tag = uuid.uuid4().hex[:6]
    creds = make_credentials([f"dev-{tag}-1", f"dev-{tag}-2"])
    enrol_devices(stack.mqtt_url(), creds)
    sid, password = next(iter(creds.items()))
    base = dash_server.url
    admin = http_login(base, "zhou.min", users["zhou.min"])
    try:
        listed = json.dumps(_list(admin, base, tag)["response"], ensure_ascii=False)
        assert sid in listed and "2 of" in listed and "may connect" in listed

        assert "done" in json.dumps(_act(admin, base, "device-disable", sid)["response"])
        assert connack(stack, sid, password) != "Success"
        assert "disabled" in json.dumps(_list(admin, base, sid)["response"])
        _act(admin, base, "device-enable", sid)
        assert connack(stack, sid, password) == "Success"
        _act(admin, base, "device-revoke", sid)
        assert connack(stack, sid, password) != "Success"
        with BusAdmin(stack.mqtt_url()) as bus:
            assert sid not in {d.sensor_id for d in bus.devices()}
    finally:
        with BusAdmin(stack.mqtt_url()) as bus:
            bus.revoke(list(creds))
    with psycopg.connect(dash_db) as conn:
        audited = conn.execute(
            "SELECT username, action, detail ->> 'target' FROM dashboard_audit"
            " WHERE detail ->> 'target' = %s ORDER BY id",
            (sid,),
        ).fetchall()
    assert audited == [
        ("zhou.min", f"admin.device_{a}", sid) for a in ("disable", "enable", "revoke")
    ]


def test_nobody_but_an_admin_may_touch_devices(dash_server, users) -> None:
    base = dash_server.url
    for user in ("li.na", "zhang.wei", "wang.fang"):
        opener = http_login(base, user, users[user])
        values = {"admin-device-revoke.n_clicks": 1, "admin-device.value": "wp-1"}
        values |= {"admin-devices-changed.data": 0, "lang.data": "en"}
        status = callback_status(
            opener, base, "admin-device-revoke", values, "admin-device-revoke.n_clicks"
        )
        assert status == 403, user
