"""One-line explanations of an alert in Simplified Chinese and English, and severities (pure).

Operators in Chengdu read Chinese first; the English line is for the English interface and for
logs. Numbers are shown with up to 6 significant digits in the quantity's canonical unit.
"""

from __future__ import annotations

import math

from sensors.quantities import QUANTITIES

SEVERITIES = ("info", "warning", "major", "critical")

QUANTITY_NAMES: dict[str, tuple[str, str]] = {
    "pressure": ("压力", "pressure"),
    "flow": ("流量", "flow"),
    "level": ("液位", "level"),
    "voltage": ("电压", "voltage"),
    "current": ("电流", "current"),
    "frequency": ("频率", "frequency"),
    "active_power": ("有功功率", "active power"),
    "loading": ("负载率", "loading"),
    "gas_flow": ("燃气流量", "gas flow"),
    "gas_concentration": ("可燃气体浓度", "combustible gas concentration"),
    "temperature": ("温度", "temperature"),
}

UTILITY_NAMES: dict[str, tuple[str, str]] = {
    "water": ("供水", "water"),
    "power": ("供电", "power"),
    "gas": ("燃气", "gas"),
}

# (utility, quantity, kind) -> severity of a threshold alert. Why these: low water pressure means
# customers without supply (major); gas over-pressure and any combustible gas above its alarm
# level endanger life (critical); a frequency excursion on the bus affects the whole feeder.
_THRESHOLD_SEVERITY: dict[tuple[str, str, str], str] = {
    ("water", "pressure", "threshold_low"): "major",
    ("water", "level", "threshold_low"): "major",
    ("gas", "pressure", "threshold_high"): "critical",
    ("gas", "pressure", "threshold_low"): "major",
    ("gas", "gas_concentration", "threshold_high"): "critical",
    ("power", "voltage", "threshold_low"): "major",
    ("power", "voltage", "threshold_high"): "major",
    ("power", "frequency", "threshold_low"): "major",
    ("power", "frequency", "threshold_high"): "major",
    ("power", "temperature", "threshold_high"): "major",
}


def threshold_severity(utility: str, quantity: str, kind: str) -> str:
    return _THRESHOLD_SEVERITY.get((utility, quantity, kind), "warning")


def format_value(value: float, quantity: str) -> str:
    """``312.5 kPa``: the value in the quantity's canonical unit."""
    if value is None or not math.isfinite(value):
        return "—"
    unit = QUANTITIES[quantity].unit if quantity in QUANTITIES else ""
    return f"{value:.6g} {unit}".strip()


def quantity_names(quantity: str) -> tuple[str, str]:
    return QUANTITY_NAMES.get(quantity, (quantity, quantity.replace("_", " ")))


def threshold_messages(
    event: str, kind: str, sensor_id: str, quantity: str, value: float, limit: float
) -> tuple[str, str]:
    """(message_zh, message_en) for a threshold alert raised or cleared."""
    q_zh, q_en = quantity_names(quantity)
    v, lim = format_value(value, quantity), format_value(limit, quantity)
    low = kind == "threshold_low"
    if event == "raised":
        zh = f"{sensor_id} {q_zh} {v}，{'低于下限' if low else '超过上限'} {lim}"
        en = (
            f"{sensor_id}: {q_en} {v} is {'below the low' if low else 'above the high'} limit {lim}"
        )
    else:
        zh = f"{sensor_id} {q_zh}已恢复至 {v}（{'下限' if low else '上限'} {lim}）"
        en = f"{sensor_id}: {q_en} back to {v} ({'low' if low else 'high'} limit {lim})"
    return zh, en


def escalation_messages(
    sensor_id: str, quantity: str, kind: str, minutes: int, level: int
) -> tuple[str, str]:
    """(message_zh, message_en) when nobody acknowledged an alert in time."""
    q_zh, q_en = quantity_names(quantity)
    zh = f"{sensor_id} {q_zh}告警已 {minutes} 分钟无人确认（第 {level} 级升级）"
    en = f"{sensor_id}: {q_en} alert unacknowledged for {minutes} min (escalation level {level})"
    return zh, en


def area_messages(
    event: str,
    kind: str,
    area: str,
    excess: float,
    supply: float,
    expected: float,
    *,
    before: float | None = None,
    persistent: bool = False,
) -> tuple[str, str]:
    """(zh, en) for the water balance of a metered area (alerts/balance.py) [L/s]; ``before``:
    a grown leak's excess when last recorded; ``persistent``: a leak raised by its persistent
    excess over the profile during the day (not by a night)."""
    e, sup, exp = f"{excess:.1f}", f"{supply:.1f}", f"{expected:.1f}"
    if persistent and event == "raised":
        return (
            f"计量区 {area} 供水量持续高于同时段常值，约多 {e} L/s（现 {sup} L/s，常值 {exp} L/s），"
            "疑似漏水",
            f"metered area {area}: supply persistently above the usual for the time of day, by"
            f" about {e} L/s (now {sup} L/s, usual {exp} L/s): suspected leak",
        )
    if event == "grown":
        b = f"{before or 0.0:.1f}"
        return (
            f"计量区 {area} 夜间流量超出漏水前水平由 {b} L/s 升至 {e} L/s（现 {sup} L/s），"
            "漏水扩大或有新漏点，已升级",
            f"metered area {area}: night flow excess rose from {b} to {e} L/s (now {sup} L/s):"
            " the leak grew or another joined it; escalated",
        )
    if kind == "night_flow_step":
        if event == "raised":
            return (
                f"计量区 {area} 夜间流量 {sup} L/s，比前一夜 {exp} L/s 跃升 {e} L/s，"
                "在已有漏水之外疑似新漏点",
                f"metered area {area}: night flow {sup} L/s stepped up {e} L/s over the previous"
                f" night's {exp} L/s: a new leak on top of the open one",
            )
        return (
            f"计量区 {area} 夜间流量跃升已消失（{sup} L/s）",
            f"metered area {area}: the night-flow step is gone ({sup} L/s)",
        )
    if kind == "water_burst":
        if event == "raised":
            return (
                f"计量区 {area} 供水量 {sup} L/s，比同时段常值 {exp} L/s 高 {e} L/s，疑似爆管",
                f"metered area {area}: supply {sup} L/s is {e} L/s above the usual {exp} L/s"
                " for this time of day: suspected burst",
            )
        return (
            f"计量区 {area} 供水量恢复正常（{sup} L/s）",
            f"metered area {area}: supply back to normal ({sup} L/s)",
        )
    if kind == "inlet_flow_low":
        if event == "raised":
            return (
                f"计量区 {area} 水源进水 {sup} L/s，比同时段常值 {exp} L/s 低 {e} L/s，"
                "疑似泵站停运或水源故障",
                f"metered area {area}: a source delivers {sup} L/s, {e} L/s under its usual"
                f" {exp} L/s for this time of day: pump or works failure?",
            )
        return (
            f"计量区 {area} 水源供水恢复（{sup} L/s）",
            f"metered area {area}: source supply back ({sup} L/s)",
        )
    if event == "raised":
        return (
            f"计量区 {area} 夜间最小流量 {sup} L/s，比前几夜 {exp} L/s 高 {e} L/s，疑似漏水",
            f"metered area {area}: night flow {sup} L/s is {e} L/s above the previous nights'"
            f" {exp} L/s: suspected leak",
        )
    return (
        f"计量区 {area} 夜间最小流量恢复（{sup} L/s）",
        f"metered area {area}: night flow back to {sup} L/s",
    )


def source_loss_messages(
    scope: str,
    scope_value: str | None,
    lost: int,
    of: int,
    since: str,
    event: str,
) -> tuple[str, str]:
    """(zh, en) of a source loss's notification (alerts/source_loss.py): what stopped, how many
    sensors and since when (``since``: a local time as the operators read it); ``event`` is
    ``source_lost`` or ``source_back``."""
    what_zh, what_en = {
        "stream": ("全部数据流", "the whole data stream"),
        "utility": (
            f"{UTILITY_NAMES.get(scope_value or '', (scope_value, ''))[0]}数据流",
            f"the {scope_value} stream",
        ),
        "district": (f"区县 {scope_value} 的传感器", f"the sensors of district {scope_value}"),
    }[scope]
    if event == "source_lost":
        return (
            f"数据源中断：{what_zh}自 {since} 起无数据（{of} 个传感器中 {lost} 个），"
            "相关区域状态未知，不是告警",
            f"source lost: no data from {what_en} since {since} ({lost} of {of} sensors);"
            " their areas are unknown, not alarms",
        )
    return (
        f"数据源恢复：{what_zh}（自 {since} 起中断的 {lost} 个传感器）重新有数据",
        f"source back: {what_en} reports again ({lost} sensors silent since {since})",
    )
