"""``cityops works add|list|cancel``: the works calendar of planned operations (valve
operations, network reconfigurations, maintenance; migration 0075, decision 0074). Alerts
raised while an entry is active on their sensors are marked ``works:<id>`` and grouped as a
planned operation, not a leak: they page nobody and are not false alerts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from cityops.shell.listing_cli import language, parse_since

console = Console(stderr=True)
works_app = typer.Typer(help="The works calendar: planned operations that raise no leak.")

HEADERS = {
    "zh": ("编号", "类型", "行业", "开始", "结束", "计量分区", "设备", "传感器", "说明", "登记人"),
    "en": (
        "id",
        "kind",
        "utility",
        "starts",
        "ends",
        "areas",
        "assets",
        "sensors",
        "description",
        "recorded by",
    ),
}
EMPTY = {"zh": "没有计划作业", "en": "no works entries"}
ADDED = {"zh": "已登记计划作业 {id}", "en": "works entry {id} recorded"}
CANCELLED = {"zh": "已取消计划作业 {id}", "en": "works entry {id} cancelled"}


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (without a zone: Chengdu's, UTC+8), or ``now``."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"a time is ISO 8601 (2026-12-03T09:00) or 'now', not {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


def parse_end(text: str, start: datetime) -> datetime:
    """An ISO time, or a duration after ``start`` (``2h``, ``90m``)."""
    try:
        return parse_time(text)
    except ValueError:
        pass
    # parse_since subtracts: a duration "after start" is start + (start - parse_since(...))
    try:
        return start + (start - parse_since(text, start))
    except ValueError:
        raise ValueError(f"--until is an ISO time or a duration (2h, 90m), not {text!r}") from None


def work_json(w: Any) -> dict[str, Any]:
    return {
        "work_id": w.work_id,
        "kind": w.kind,
        "utility": w.utility,
        "starts_at": w.starts_at.isoformat(),
        "ends_at": w.ends_at.isoformat(),
        "area_ids": list(w.area_ids),
        "asset_ids": list(w.asset_ids),
        "sensor_ids": list(w.sensor_ids),
        "description": w.description,
        "recorded_by": w.recorded_by,
        "recorded_at": w.recorded_at.isoformat(),
        "cancelled_at": w.cancelled_at.isoformat() if w.cancelled_at else None,
        "cancelled_by": w.cancelled_by,
    }


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/]", soft_wrap=True)
    return typer.Exit(2)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@works_app.command("add")
def add(
    kind: Annotated[str, typer.Argument(help="valve_operation, reconfiguration or maintenance.")],
    utility: Annotated[str, typer.Option(help="water, power or gas.")] = "water",
    start: Annotated[str, typer.Option("--from", help="Start: ISO time (UTC+8) or now.")] = "now",
    until: Annotated[str, typer.Option(help="End: ISO time or a duration after the start.")] = "",
    area: Annotated[
        list[str] | None, typer.Option(help="Metered area id (repeat or comma-separate).")
    ] = None,
    asset: Annotated[
        list[str] | None, typer.Option(help="Network asset operated (a valve, a pipe ...).")
    ] = None,
    sensor: Annotated[list[str] | None, typer.Option(help="Sensor id it affects.")] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What and why.")] = "",
    by: Annotated[str, typer.Option(help="Who records it (operator or system).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the entry as JSON.")] = False,
    lang: Annotated[str | None, typer.Option(help="zh or en.")] = None,
) -> None:
    """Record a planned operation. Without --area, --asset or --sensor it covers every sensor
    of its utility."""
    from alerts.api import add_work, list_works
    from cityops.kernel.db import connect
    from cityops.shell.stack import command_settings

    settings = command_settings()
    try:
        if not until:
            raise ValueError("--until is required (an ISO time or a duration such as 2h)")
        starts_at = parse_time(start)
        ends_at = parse_end(until, starts_at)
        with connect(settings.database_url) as conn:
            work_id = add_work(
                conn,
                kind=kind,
                utility=utility,
                starts_at=starts_at,
                ends_at=ends_at,
                description=description,
                recorded_by=by,
                area_ids=_split(area),
                asset_ids=_split(asset),
                sensor_ids=_split(sensor),
            )
            work = next(w for w in list_works(conn, include_cancelled=True) if w.work_id == work_id)
    except ValueError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(work_json(work), ensure_ascii=False))
    else:
        typer.echo(ADDED[language(lang, settings.language)].format(id=work_id))


SHUTDOWN_LINES = {
    "zh": (
        "计划停水/停气/停电：关闭 {devices}",
        "{start} 至 {end}（{hours:g} 小时）",
        "失去供应：{nodes} 个节点，{links} 段管线/线路，{customers} 户（约 {population} 人），"
        "{customer_hours:g} 户·小时",
        "重要设施：{facilities}",
        "受影响传感器：{sensors}",
        "已记入计划作业 {id}：这些传感器在作业期间的告警归为计划作业，不按漏损处理",
    ),
    "en": (
        "planned shutdown: close {devices}",
        "{start} to {end} ({hours:g} h)",
        "without supply: {nodes} nodes, {links} pipes or lines, {customers} customers "
        "(about {population} people), {customer_hours:g} customer-hours",
        "facilities: {facilities}",
        "sensors affected: {sensors}",
        "recorded as works entry {id}: these sensors' alarms during the works are a planned "
        "operation, not a leak",
    ),
}
NONE = {"zh": "无", "en": "none"}


@works_app.command("shutdown")
def shutdown(
    device: Annotated[
        list[str], typer.Option(help="Valve or switch to close (repeat or comma-separate).")
    ],
    network: Annotated[str, typer.Option(help="water, gas or power.")] = "water",
    start: Annotated[str, typer.Option("--from", help="Start: ISO time (UTC+8) or now.")] = "now",
    until: Annotated[str, typer.Option(help="End: ISO time or a duration after the start.")] = "",
    record: Annotated[
        bool, typer.Option(help="Add it to the works calendar, covering the sensors cut off.")
    ] = False,
    description: Annotated[str, typer.Option("--description", "-d", help="What and why.")] = "",
    by: Annotated[str, typer.Option(help="Who records it (with --record).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    lang: Annotated[str | None, typer.Option(help="zh or en.")] = None,
) -> None:
    """A planned shutdown: which places, customers, facilities and sensors lose supply while
    the devices are closed, and for how long. --record adds it to the works calendar so the
    low pressure it causes raises a planned operation, not a leak."""
    from alerts.api import add_work
    from cityops.kernel.db import connect
    from cityops.shell.stack import command_settings
    from gis.analysis import fetch_shutdown

    settings = command_settings()
    lang = language(lang, settings.language)
    devices = _split(device)
    try:
        if network not in ("water", "gas", "power"):
            raise ValueError(f"--network is water, gas or power, not {network!r}")
        if not until:
            raise ValueError("--until is required (an ISO time or a duration such as 4h)")
        starts_at = parse_time(start)
        ends_at = parse_end(until, starts_at)
        if ends_at <= starts_at:
            raise ValueError("--until must be after --from")
        hours = round((ends_at - starts_at).total_seconds() / 3600, 2)
        with connect(settings.database_url) as conn:
            fc = fetch_shutdown(conn, network, devices, hours=hours, with_geometry=False)
            sd = fc["shutdown"]
            work_id = None
            if record:
                text = description or f"planned shutdown: close {', '.join(sd['devices'])}"
                work_id = add_work(
                    conn,
                    kind="valve_operation",
                    utility=network,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    description=text,
                    recorded_by=by,
                    asset_ids=sd["devices"],
                    sensor_ids=[x["sensor_id"] for x in sd["sensors_without_supply"]],
                )
    except ValueError as exc:  # NetworkError and bad times included
        raise _fail(exc) from None
    if as_json:
        out = {**sd, "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()}
        typer.echo(json.dumps({**out, "work_id": work_id}, ensure_ascii=False))
        return
    tz = ZoneInfo(settings.timezone)
    lines = SHUTDOWN_LINES[lang]
    none = NONE[lang]
    typer.echo(lines[0].format(devices=", ".join(sd["devices"])))
    typer.echo(
        lines[1].format(
            start=starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            end=ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            hours=hours,
        )
    )
    typer.echo(
        lines[2].format(
            nodes=len(sd["nodes_without_supply"]),
            links=len(sd["links_without_supply"]),
            customers=sd["customers_without_supply"],
            population=sd["population_without_supply"],
            customer_hours=sd["customer_hours"],
        )
    )
    typer.echo(lines[3].format(facilities=", ".join(sd["facilities_without_supply"]) or none))
    sensors = [x["sensor_id"] for x in sd["sensors_without_supply"]]
    typer.echo(lines[4].format(sensors=", ".join(sensors) or none))
    if work_id is not None:
        typer.echo(lines[5].format(id=work_id))


@works_app.command("list")
def list_(
    active: Annotated[bool, typer.Option(help="Only those running now.")] = False,
    cancelled: Annotated[bool, typer.Option(help="Include cancelled entries.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per entry).")] = False,
    lang: Annotated[str | None, typer.Option(help="zh or en.")] = None,
) -> None:
    """List the works calendar, earliest start first."""
    from alerts.api import list_works
    from cityops.kernel.db import connect
    from cityops.shell.stack import command_settings

    settings = command_settings()
    with connect(settings.database_url) as conn:
        works = list_works(
            conn, active_at=datetime.now(UTC) if active else None, include_cancelled=cancelled
        )
    if as_json:
        typer.echo(json.dumps([work_json(w) for w in works], ensure_ascii=False, indent=1))
        return
    lang = language(lang, settings.language)
    if not works:
        typer.echo(EMPTY[lang])
        return
    tz = ZoneInfo(settings.timezone)
    table = Table(*HEADERS[lang])
    for w in works:
        table.add_row(
            str(w.work_id) + (" ✗" if w.cancelled_at else ""),
            w.kind,
            w.utility,
            w.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            w.ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            ",".join(w.area_ids),
            ",".join(w.asset_ids),
            ",".join(w.sensor_ids),
            w.description,
            w.recorded_by,
        )
    Console(width=200).print(table)


@works_app.command("cancel")
def cancel(
    work_id: Annotated[int, typer.Argument(help="The entry's id.")],
    by: Annotated[str, typer.Option(help="Who cancels it.")] = "",
    lang: Annotated[str | None, typer.Option(help="zh or en.")] = None,
) -> None:
    """Cancel a planned operation (kept in the calendar, marked cancelled)."""
    from alerts.api import cancel_work
    from cityops.kernel.db import connect
    from cityops.shell.stack import command_settings

    settings = command_settings()
    try:
        with connect(settings.database_url) as conn:
            cancel_work(conn, work_id, by)
    except (ValueError, LookupError) as exc:
        raise _fail(exc) from None
    typer.echo(CANCELLED[language(lang, settings.language)].format(id=work_id))


def register(app: typer.Typer) -> None:
    """Mount ``works`` on the ``cityops`` command."""
    app.add_typer(works_app, name="works")
