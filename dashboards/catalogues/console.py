"""Messages of the console screens (merged into dashboards.i18n.MESSAGES)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {
        # what kind of incident the alert engine grouped (incidents.kind); shared with the wall
        "incident.kind.gas_leak": "疑似燃气泄漏",
        "incident.kind.water_burst": "疑似供水爆管",
        "incident.kind.water_leak": "疑似供水管网漏水",
        "incident.kind.water_supply_loss": "水源供水中断",
        "incident.kind.sensor_health": "传感器异常",
        "incident.kind.planned_operation": "计划作业引起",
        "incident.kind.power_outage": "疑似停电",
        "incident.kind.anomaly": "{utility}异常",
        "incident.kind.source_loss": "数据源中断",
        "console.facts": "{n} 条相关告警（{open} 条未关闭），来自 {sensors} 个传感器，相距约 {extent} 米",
        "console.facts_one_sensor": "{n} 条相关告警（{open} 条未关闭），均来自同一传感器",
        "console.facts_title": "事件概况",
        "console.no_incident": "该告警尚未归入事件",
        "incident.district": "所在区县：{name}",
        "console.session_expired": "登录已过期，处置前请重新登录",
        "console.login_again": "重新登录",
        "console.act_title": "处置",
    },
    "en": {
        "incident.kind.gas_leak": "Suspected gas leak",
        "incident.kind.water_burst": "Suspected water main burst",
        "incident.kind.water_leak": "Suspected water leak",
        "incident.kind.water_supply_loss": "Supply lost at a source",
        "incident.kind.sensor_health": "Sensor problems",
        "incident.kind.planned_operation": "Planned operation",
        "incident.kind.power_outage": "Suspected power outage",
        "incident.kind.anomaly": "{utility} anomaly",
        "incident.kind.source_loss": "Data source lost",
        "console.facts": "Related alerts: {n}, open: {open}; from {sensors} sensors about {extent} m apart",
        "console.facts_one_sensor": "Related alerts: {n}, open: {open}; all from one sensor",
        "console.facts_title": "Incident",
        "console.no_incident": "This alert is not part of an incident yet",
        "incident.district": "District: {name}",
        "console.session_expired": "Your session has ended: log in again before acting",
        "console.login_again": "Log in again",
        "console.act_title": "Act",
    },
}
