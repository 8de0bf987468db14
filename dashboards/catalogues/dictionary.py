"""The names of layers, fields, coded values and quantities, from the data dictionary's one
definition (``gis/dictionary.py``, ``sensors/quantities.py``), and the dictionary page's words."""

from __future__ import annotations

from gis.dictionary import NAMES
from sensors.quantities import QUANTITY_NAMES

PAGE: dict[str, dict[str, str]] = {
    "zh": {
        "nav.dictionary": "数据字典",
        "dict.title": "数据字典",
        "dict.intro": "城市基础地理数据库各图层的字段及其名称、单位、类型和取值规则，各图层的数据分级和来源，以及各类监测量和传感器类型。取值规则由数据库约束执行，导入图层文件时逐条检查，不合规则的一并列出、一条也不写入。",
        "dict.download_json": "下载 JSON",
        "dict.download_csv": "下载 CSV（Excel 可打开）",
        "dict.field": "字段",
        "dict.name": "名称",
        "dict.unit": "单位",
        "dict.type": "类型",
        "dict.required": "必填",
        "dict.rule": "取值规则",
        "dict.geometry": "几何类型 {geometry}，坐标系 {crs}",
        "dict.class.public": "数据分级：公开",
        "dict.class.internal": "数据分级：内部",
        "dict.class.restricted": "数据分级：受限",
        "dict.source": "来源：",
        "dict.quantities": "监测量",
        "dict.quantity": "监测量",
        "dict.accepted": "可接受的单位",
        "dict.range": "物理范围（超出即为传感器故障）",
        "dict.sensor_types": "传感器类型",
        "dict.sensor_type": "类型",
        "dict.utility": "行业",
        "dict.quantities_measured": "测量",
        "dict.interval": "上报间隔",
        "dict.seconds": "{n} 秒",
        "planner.dictionary": "各图层字段的含义、单位和取值规则见数据字典",
    },
    "en": {
        "nav.dictionary": "Data dictionary",
        "dict.title": "Data dictionary",
        "dict.intro": "The fields of every layer of the city's basic geographic database with their names, units, types and rules, each layer's data class and source, and the measured quantities and sensor types. The database enforces the rules; a layer file is checked against them row by row before loading, and everything that breaks them is listed and nothing is written.",
        "dict.download_json": "Download JSON",
        "dict.download_csv": "Download CSV (opens in Excel)",
        "dict.field": "Field",
        "dict.name": "Name",
        "dict.unit": "Unit",
        "dict.type": "Type",
        "dict.required": "Required",
        "dict.rule": "Allowed values",
        "dict.geometry": "geometry {geometry}, coordinates {crs}",
        "dict.class.public": "data class: public",
        "dict.class.internal": "data class: internal",
        "dict.class.restricted": "data class: restricted",
        "dict.source": "source: ",
        "dict.quantities": "Measured quantities",
        "dict.quantity": "Quantity",
        "dict.accepted": "Accepted units",
        "dict.range": "Physical range (beyond it: a sensor fault)",
        "dict.sensor_types": "Sensor types",
        "dict.sensor_type": "Type",
        "dict.utility": "Utility",
        "dict.quantities_measured": "Measures",
        "dict.interval": "Reports every",
        "dict.seconds": "{n} s",
        "planner.dictionary": "What each layer's fields mean, their units and rules: the data dictionary",
    },
}

MESSAGES: dict[str, dict[str, str]] = {
    lang: {
        **NAMES[lang],
        **{f"quantity.{q}": name for q, name in QUANTITY_NAMES[lang].items()},
        **PAGE[lang],
    }
    for lang in ("zh", "en")
}
