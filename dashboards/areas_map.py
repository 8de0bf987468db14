"""The metered areas (DMAs) as a layer of the planner's map: each area's polygon with its name,
its meters (sign: + where positive flow enters) and whether its water balance is alerting, or
unknown: a meter of it is in an open source loss (alerts/source_loss.py), so its balance is
not computed and its state is not known (grey, hatched; not red).

Read through ``alerts.api`` (the areas are the alerts part's tables); the traces are plain
Plotly JSON for the planner's cartesian lon/lat map (dashboards/figures.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashboards.model import display_text

# user-facing words of this layer (zh is the default language)
TEXT = {
    "zh": {
        "layer": "计量分区",
        "meters": "计量表",
        "ok": "水量平衡正常",
        "alerting": "水量平衡告警",
        "unknown": "计量表数据中断，水量平衡状态未知",
        "km2": "面积 {v:.2f} km²",
    },
    "en": {
        "layer": "Metered areas",
        "meters": "meters",
        "ok": "water balance normal",
        "alerting": "water balance alerting",
        "unknown": "a meter's data is lost: water balance unknown",
        "km2": "area {v:.2f} km²",
    },
}
COLOURS = {"ok": "#1677ff", "alerting": "#f5222d", "unknown": "#a0aab6"}


def fetch_area_layer(conn: Any) -> list[dict[str, Any]]:
    """The metered areas with their polygons (``alerts.api.read_metered_area_list``), each
    marked ``lost`` when one of its meters is in an open source loss."""
    from alerts.api import read_metered_area_list

    areas = read_metered_area_list(conn, geometry=True)
    lost = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT unnest(sensors) FROM source_losses WHERE state = 'open'"
        )
    }
    return [mark_lost(area, lost) for area in areas]


def mark_lost(area: dict[str, Any], lost: set[str] | frozenset[str]) -> dict[str, Any]:
    """The area with ``lost``: one of its meters is among the ``lost`` sensors."""
    return {**area, "lost": any(m["sensor_id"] in lost for m in area["meters"])}


def area_condition(area: dict[str, Any]) -> str:
    """unknown (a meter's data lost) > alerting > ok."""
    if area.get("lost"):
        return "unknown"
    return "alerting" if area["alerting"] else "ok"


def _rings(geometry: dict[str, Any] | None) -> tuple[list[float | None], list[float | None]]:
    """The outer and inner rings of a (Multi)Polygon as one x/y list, parts separated by None."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    if not geometry:
        return xs, ys
    polys = geometry["coordinates"]
    if geometry.get("type") == "Polygon":
        polys = [polys]
    for poly in polys:
        for ring in poly:
            xs.extend(float(p[0]) for p in ring)
            ys.extend(float(p[1]) for p in ring)
            xs.append(None)
            ys.append(None)
    return xs, ys


def area_label(area: dict[str, Any], lang: str) -> str:
    """The hover text of an area: name and id, meters with signs, balance state, size."""
    words = TEXT.get(lang, TEXT["zh"])
    meters = " ".join(
        ("+" if m["sign"] > 0 else "−") + display_text(m["sensor_id"]) for m in area["meters"]
    )
    condition = area_condition(area)
    if condition == "alerting":
        state = f"{words['alerting']}: {', '.join(display_text(k) for k in area['alerting'])}"
    else:
        state = words[condition]
    parts = [
        f"<b>{display_text(area['name'])}</b> ({display_text(area['area_id'])})",
        f"{words['meters']}: {meters}",
        state,
    ]
    if area.get("area_km2") is not None:
        parts.append(words["km2"].format(v=area["area_km2"]))
    return "<br>".join(parts)


def area_traces(areas: Sequence[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """One filled outline per area (red while its balance alerts, grey and hatched while a
    meter's data is lost, else blue), drawn under the answer's features; areas without a
    polygon are left off the map."""
    words = TEXT.get(lang, TEXT["zh"])
    traces = []
    for i, area in enumerate(areas):
        xs, ys = _rings(area.get("boundary"))
        if not xs:
            continue
        condition = area_condition(area)
        colour = COLOURS[condition]
        label = area_label(area, lang)
        hatch = {"fillpattern": {"shape": "/", "fgcolor": colour, "solidity": 0.25}}
        traces.append(
            (hatch if condition == "unknown" else {})
            | {
                "type": "scatter",
                "x": xs,
                "y": ys,
                "mode": "lines",
                "fill": "toself",
                "fillcolor": colour + "22",
                "line": {"color": colour, "width": 2},
                "name": words["layer"],
                "legendgroup": "metered-areas",
                "showlegend": i == 0,
                "text": label,
                "hoveron": "fills+points",
                "hoverinfo": "text",
                "meta": {
                    "area_id": area["area_id"],
                    "alerting": bool(area["alerting"]),
                    "condition": condition,
                },
            }
        )
    return traces
