"""Messages of the source loss screens (merged into dashboards.i18n.MESSAGES): the source-loss
banner, the unknown state, the trust page's not-reporting column and the stale-page watchdog
(assets/stale.js, which gets them through /api/heartbeat)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {
        "state.lost": "未知（数据中断）",
        "loss.banner": "数据源中断：{what}自 {since} 起无数据（{n}/{of} 个传感器），"
        "相关区域显示为“未知”，不是告警；数据恢复后自动关闭。",
        "loss.back": "数据已恢复（{what}），正在核对，稍后自动关闭。",
        "loss.stream": "全部数据流",
        "loss.utility": "{utility}数据流",
        "loss.district": "{district}的传感器",
        "loss.acknowledge": "我来处理",
        "loss.acknowledged": "{user} 已接手（{time}）",
        "loss.ack_done": "已接手：数据恢复后自动关闭。",
        "loss.ack_already": "已有人接手。",
        "loss.ack_closed": "该数据中断已经结束。",
        "loss.ack_unknown": "没有这条数据中断。",
        "trust.not_reporting": "未上报传感器",
        "stale.server_lost": "与服务器的连接已中断，本页显示的是 {time} 的数据；恢复后自动继续。",
        "stale.db_down": "数据库暂时无法连接，本页显示的是上次成功刷新的数据；系统将自动重试。",
        "stale.page_failed": "本页数据刷新失败，显示的可能是旧数据；系统将自动重试。",
        "stale.stream_lost": "数据流中断：{what}自 {since} 起无数据，数字可能已过时。",
        "stale.ingest_stopped": "数据接入已停止：自 {since} 起没有新数据写入，数字已过时。",
    },
    "en": {
        "state.lost": "unknown (source lost)",
        "loss.banner": "Source lost: no data from {what} since {since} ({n} of {of} sensors); "
        "their area is shown as unknown, not as an alarm. It closes by itself when data returns.",
        "loss.back": "Data is back ({what}); checking, it closes by itself shortly.",
        "loss.stream": "the whole data stream",
        "loss.utility": "the {utility} stream",
        "loss.district": "the sensors of {district}",
        "loss.acknowledge": "I'm on it",
        "loss.acknowledged": "taken on by {user} ({time})",
        "loss.ack_done": "Taken on: it closes by itself when the data returns.",
        "loss.ack_already": "Somebody has already taken it on.",
        "loss.ack_closed": "This source loss has already ended.",
        "loss.ack_unknown": "No such source loss.",
        "trust.not_reporting": "Sensors not reporting",
        "stale.server_lost": "The connection to the server is lost: this page shows data from "
        "{time}. It carries on by itself when the server is back.",
        "stale.db_down": "The database cannot be reached: this page shows the last data it got. "
        "Retrying by itself.",
        "stale.page_failed": "This page's data could not be refreshed and may be old; retrying.",
        "stale.stream_lost": "Data stream stopped: no data from {what} since {since}; "
        "figures may be out of date.",
        "stale.ingest_stopped": "Data intake stopped: nothing stored since {since}; "
        "the figures are out of date.",
    },
}
