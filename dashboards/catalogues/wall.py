"""Messages of the wall screens (merged into dashboards.i18n.MESSAGES)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {
        "wall.calm": "运行平稳 · 暂无需要处置的事件",
        "wall.attention": "需要关注：{n} 起事件",
        "wall.incident": "{district} · {kind}（{alerts} 条告警）",
        "wall.ungrouped": "{n} 条告警待归并",
        "wall.districts_attention": "需关注的区县",
        "wall.districts_rest": "其余 {n} 个区县正常",
        "wall.districts_all_normal": "全部 {n} 个区县正常",
        "wall.kpi.completeness": "小时完整率",
        "wall.kpi.outages": "停供用户（{n} 起）",
    },
    "en": {
        "wall.calm": "All calm · nothing needs attention",
        "wall.attention": "Incidents needing attention: {n}",
        "wall.incident": "{district} · {kind} (alerts: {alerts})",
        "wall.ungrouped": "alerts not yet grouped: {n}",
        "wall.districts_attention": "Districts needing attention",
        "wall.districts_rest": "The other {n} districts are normal",
        "wall.districts_all_normal": "All {n} districts normal",
        "wall.kpi.completeness": "Complete (1 h)",
        "wall.kpi.outages": "Cut off ({n} inc.)",
    },
}
