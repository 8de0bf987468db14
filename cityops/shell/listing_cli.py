"""``cityops alerts list`` and ``cityops incidents list``: what is open, without SQL.

A table by default (zh or en: ``--lang``, else CITYOPS_LANG, else the settings' language),
``--json`` for scripts. Read-only (``alerts.api.read_alert_list`` / ``read_incident_list``).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)

HEADERS = {
    "alerts": {
        "zh": (
            "编号",
            "发生时间",
            "状态",
            "级别",
            "行业",
            "传感器",
            "类型",
            "数值",
            "限值",
            "事件",
            "说明",
        ),
        "en": (
            "id",
            "raised",
            "state",
            "severity",
            "utility",
            "sensor",
            "kind",
            "value",
            "limit",
            "incident",
            "message",
        ),
    },
    "incidents": {
        "zh": ("编号", "开始时间", "状态", "级别", "行业", "类型", "告警数", "可能位置", "说明"),
        "en": (
            "id",
            "opened",
            "state",
            "severity",
            "utility",
            "kind",
            "alerts",
            "likely location",
            "explanation",
        ),
    },
}
EMPTY = {"zh": "没有符合条件的{what}", "en": "no {what} match"}
WHAT = {"alerts": {"zh": "告警", "en": "alerts"}, "incidents": {"zh": "事件", "en": "incidents"}}

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``7d``, ``30m`` before ``now``, or an ISO 8601 time (a time without a zone is
    taken in UTC+8, Chengdu's)."""
    m = _DURATION.match(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since is a duration (24h, 7d) or an ISO time, not {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


def language(option: str | None, default: str) -> str:
    lang = (option or os.environ.get("CITYOPS_LANG") or default or "zh").lower()[:2]
    return lang if lang in ("zh", "en") else "zh"


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def _time(v: datetime | None, tz: ZoneInfo) -> str:
    return v.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if v else ""


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def table_rows(kind: str, rows: list[dict[str, Any]], lang: str, tz: ZoneInfo) -> list[tuple]:
    """Cells of the table (pure)."""
    if kind == "alerts":
        return [
            (
                str(r["alert_id"]),
                _time(r["raised_at"], tz),
                r["state"],
                r["severity"],
                r["utility"],
                r["sensor_id"],
                f"{r['quantity']}/{r['kind']}",
                _num(r["value"]),
                _num(r["limit_value"]),
                "" if r["incident_id"] is None else str(r["incident_id"]),
                r[f"message_{lang}"],
            )
            for r in rows
        ]
    return [
        (
            _incident_id(r),
            _time(r["opened_at"], tz),
            r["state"],
            r["severity"],
            r["utility"] or "",
            r["kind"],
            str(r["alert_count"]),
            _where(r),
            r[f"explanation_{lang}"],
        )
        for r in rows
    ]


def _incident_id(r: dict[str, Any]) -> str:
    """An incident's id, or ``SL<id>`` for a source loss (``source_losses``, not an incident)."""
    if r.get("source_loss_id") is not None:
        return f"SL{r['source_loss_id']}"
    return str(r["incident_id"])


def _where(r: dict[str, Any]) -> str:
    """The likely location, or what a source loss stopped: scope, value, sensors lost/of."""
    if r.get("source_loss_id") is not None:
        what = " ".join(str(v) for v in (r["scope"], r["scope_value"]) if v)
        return f"{what} {r['sensors']}/{r['group_size']}"
    return r["likely_location"] or ""


def _list(kind: str, state, utility, since, limit, as_json, lang) -> None:
    from alerts.api import ListingError, read_alert_list, read_incident_list
    from cityops.kernel.db import connect
    from cityops.shell.stack import command_settings

    settings = command_settings()
    try:
        t0 = parse_since(since, datetime.now(UTC)) if since else None
        with connect(settings.database_url) as conn:
            if kind == "alerts":
                rows = read_alert_list(conn, state=state, utility=utility, since=t0, limit=limit)
            else:
                rows = read_incident_list(
                    conn,
                    state=state,
                    utility=utility,
                    since=t0,
                    limit=limit,
                    tz=settings.timezone,
                )
    except (ListingError, ValueError) as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        out = [{k: _json_value(v) for k, v in r.items()} for r in rows]
        typer.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    lang = language(lang, settings.language)
    if not rows:
        typer.echo(EMPTY[lang].format(what=WHAT[kind][lang]))
        return
    table = Table(*HEADERS[kind][lang], show_lines=False)
    for cells in table_rows(kind, rows, lang, ZoneInfo(settings.timezone)):
        table.add_row(*cells)
    Console(width=200).print(table)


StateOpt = Annotated[
    str | None,
    typer.Option(help="open, acknowledged, in_progress, resolved, closed, or active (not done)."),
]
UtilityOpt = Annotated[str | None, typer.Option(help="water, power or gas.")]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only since then: a duration (24h, 7d) or an ISO time.")
]
LimitOpt = Annotated[int, typer.Option(help="At most this many, newest first.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON (one object per row).")]
LangOpt = Annotated[
    str | None, typer.Option(help="zh or en (default: CITYOPS_LANG, else the settings' language).")
]


def register(alerts_app: typer.Typer, incidents_app: typer.Typer) -> None:
    @alerts_app.command("list")
    def alerts_list(
        state: StateOpt = None,
        utility: UtilityOpt = None,
        since: SinceOpt = None,
        limit: LimitOpt = 50,
        as_json: JsonOpt = False,
        lang: LangOpt = None,
    ) -> None:
        """List alerts, newest first (read-only): id, time, state, severity, utility, sensor,
        quantity and kind, value and limit, incident, message."""
        _list("alerts", state, utility, since, limit, as_json, lang)

    @incidents_app.command("list")
    def incidents_list(
        state: StateOpt = None,
        utility: UtilityOpt = None,
        since: SinceOpt = None,
        limit: LimitOpt = 50,
        as_json: JsonOpt = False,
        lang: LangOpt = None,
    ) -> None:
        """List incidents (alerts grouped by place and time), newest first (read-only): id,
        opening time, state, severity, utility, kind, alert count, likely location,
        explanation. Source losses (many sensors silent together) are listed as incidents of
        kind source_loss, id SL<n>: what stopped, since when, sensors lost of the scope's."""
        _list("incidents", state, utility, since, limit, as_json, lang)
