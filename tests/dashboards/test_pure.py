"""Pure parts of the dashboard: catalogues, text safety, time, figure builders."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dashboards.figures import build_city_map_figure
from dashboards.i18n import MESSAGES, t
from dashboards.model import (
    District,
    DistrictSummary,
    SensorPoint,
    age_parts,
    choose_grid_cell_deg,
    choose_readings_source,
    display_text,
    district_condition,
    local_time,
    parse_shelve_hours,
    plot_text,
    time_left_parts,
)
from dashboards.security import build_csp


def test_catalogues_have_the_same_keys_and_placeholders():
    assert set(MESSAGES["zh"]) == set(MESSAGES["en"])
    for key, zh in MESSAGES["zh"].items():
        en = MESSAGES["en"][key]
        assert sorted(_fields(zh)) == sorted(_fields(en)), key
    assert t("fr", "nav.overview") == "运行总览"  # unknown language falls back to Chinese
    assert t("en", "banner.updated", time="12:00") == "Updated 12:00"


def _fields(text: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(text) if f]


def test_display_text_defuses_mathjax_and_invisible_characters():
    assert display_text("$x^2$ 压力") == "＄x^2＄ 压力"
    assert display_text("ab\u202ecd\u200b") == "abcd"
    assert display_text("<b>x</b>") == "<b>x</b>"  # components render text, not HTML
    assert plot_text('<a href="javascript:x">$1$</a>') == (
        '&lt;a href="javascript:x"&gt;＄1＄&lt;/a&gt;'
    )


def test_local_time_is_asia_shanghai():
    ts = datetime(2026, 1, 1, 16, 30, tzinfo=UTC)
    assert local_time(ts, "Asia/Shanghai") == "2026-01-02 00:30:00"
    assert local_time(None, "Asia/Shanghai") == "—"


def test_age_units():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age_parts(now, now - timedelta(minutes=7)) == ("unit.min", 7)
    assert age_parts(now, now - timedelta(hours=5)) == ("unit.hour", 5)
    assert age_parts(now, now - timedelta(days=3)) == ("unit.day", 3)
    # time left on a shelf rounds up: 2 h 59 min left is "3 h", not "2 h"
    assert time_left_parts(now, now + timedelta(hours=2, minutes=59)) == ("unit.hour", 3)
    assert time_left_parts(now, now + timedelta(minutes=10, seconds=1)) == ("unit.min", 11)
    assert time_left_parts(now, now + timedelta(hours=2)) == ("unit.min", 120)
    assert time_left_parts(now, now + timedelta(days=2, hours=1)) == ("unit.day", 3)
    assert time_left_parts(now, now - timedelta(minutes=1)) == ("unit.min", 0)


def test_readings_source_and_grid():
    assert choose_readings_source(3600) == "raw"
    assert choose_readings_source(6 * 3600) == "raw"
    assert choose_readings_source(86_400) == "1m"
    assert choose_readings_source(30 * 86_400) == "1h"
    assert choose_grid_cell_deg(2.0) == 0.05
    assert choose_grid_cell_deg(0.05) == 0.001


def test_district_condition_order():
    base = dict(adcode=1, name_zh="a", name_en="a", sensors=3, nodata=0)
    assert (
        district_condition(
            DistrictSummary(**base, alarm=0, silent=0, open_alerts=0, worst_severity=None)
        )
        == "normal"
    )
    assert (
        district_condition(
            DistrictSummary(**base, alarm=0, silent=1, open_alerts=0, worst_severity=None)
        )
        == "silent"
    )
    assert (
        district_condition(
            DistrictSummary(**base, alarm=1, silent=1, open_alerts=1, worst_severity="major")
        )
        == "alarm"
    )
    assert (
        district_condition(
            DistrictSummary(**base, alarm=1, silent=0, open_alerts=1, worst_severity="critical")
        )
        == "critical"
    )


def test_map_figure_escapes_names_and_keeps_aspect():
    square = ((104.0, 30.0), (104.1, 30.0), (104.1, 30.1), (104.0, 30.1), (104.0, 30.0))
    d = District(1, "<b>区</b>", "D", (square,))
    s = SensorPoint("x-1", "$a$<i>", "water", "water_pressure", 1, 104.05, 30.05, "alarm", None)
    fig = build_city_map_figure([d], [], lang="zh", sensors=[s])
    texts = [tr["text"] for tr in fig["data"]]
    assert "&lt;b&gt;区&lt;/b&gt;" in texts[0]
    assert "＄a＄&lt;i&gt;" in texts[1][0]
    assert "$" not in str(texts)
    assert fig["layout"]["yaxis"]["scaleanchor"] == "x"
    assert fig["layout"]["yaxis"]["scaleratio"] > 1.1
    # the JSON is valid Plotly: the validating constructor accepts it
    import plotly.graph_objects as go

    go.Figure(fig)


def test_csp_allows_only_self():
    csp = build_csp(["'sha256-abc'"])
    assert "default-src 'self'" in csp and "'sha256-abc'" in csp and "http" not in csp


def test_cell_state_needs_a_share_of_silent_sensors():
    from dashboards.model import GridCell, cell_state

    assert cell_state(GridCell(0, 0, 50, 0, 1, 0)) == "normal"
    assert cell_state(GridCell(0, 0, 50, 0, 20, 0)) == "silent"
    assert cell_state(GridCell(0, 0, 50, 0, 0, 30)) == "nodata"
    assert cell_state(GridCell(0, 0, 50, 1, 30, 0)) == "alarm"


def test_parse_view_keeps_the_last_zoom():
    from dashboards.model import parse_view, view_bbox

    v = parse_view(
        {
            "xaxis.range[0]": 104.2,
            "xaxis.range[1]": 103.9,
            "yaxis.range[0]": 30.5,
            "yaxis.range[1]": 30.8,
        },
        None,
    )
    assert v == ((103.9, 104.2), (30.5, 30.8))
    assert parse_view({"dragmode": "zoom"}, v) == v
    assert parse_view({"xaxis.autorange": True, "yaxis.autorange": True}, v) is None
    assert view_bbox(v) == (103.9, 30.5, 104.2, 30.8)


def test_snapshot_aggregations():
    from dashboards.model import District
    from dashboards.snapshot import (
        SensorStates,
        city_markers,
        district_summaries,
        grid_cells,
        select_points,
        utility_figures,
    )

    rows = [
        ("a", "A", "water", "water_pressure", 1, 104.001, 30.001, "normal", None),
        ("b", "B", "water", "water_pressure", 1, 104.002, 30.002, "alarm", None),
        ("c", "C", "gas", "gas_pressure", 2, 104.051, 30.001, "silent", None),
        ("d", "D", "power", "power_bus", None, 104.052, 30.002, "nodata", None),
    ]
    s = SensorStates.from_rows(rows)
    assert len(select_points(s)) == 4
    assert [p.sensor_id for p in select_points(s, bbox=(104.0, 30.0, 104.01, 30.01))] == ["a", "b"]
    assert [p.sensor_id for p in select_points(s, utilities=["water"])] == ["a", "b"]
    assert [p.sensor_id for p in select_points(s, states=["alarm"])] == ["b"]
    cells = sorted(grid_cells(s, cell_deg=0.05), key=lambda c: c.lon)
    assert [(c.sensors, c.alarm, c.silent, c.nodata) for c in cells] == [(2, 1, 0, 0), (2, 0, 1, 1)]
    assert abs(cells[0].lon - 104.025) < 1e-9
    d = [District(1, "一", "One", ()), District(2, "二", "Two", ())]
    summaries = district_summaries(s, d, {1: (2, ["warning", "critical"])})
    assert [(x.sensors, x.alarm, x.silent, x.open_alerts, x.worst_severity) for x in summaries] == [
        (2, 1, 0, 2, "critical"),
        (1, 0, 1, 0, None),
    ]
    figures = {
        f.utility: f
        for f in utility_figures(
            s, {"water": [("major", 1)]}, {"water": 0.9}, {"power": (1, 42, 110)}
        )
    }
    assert (figures["water"].sensors, figures["water"].reporting) == (2, 2)
    assert figures["water"].open_alerts == 1 and figures["water"].completeness == 0.9
    assert figures["power"].nodata == 1 and figures["gas"].silent == 1
    assert (figures["power"].customers_cut, figures["water"].customers_cut) == (42, 0)
    # a whole-city map draws single sensors up to a limit, grid cells beyond
    assert [p.sensor_id for p in city_markers(s)[0]] == ["a", "b", "c", "d"]
    sensors, cells = city_markers(s, points_max=3)
    assert sensors == [] and sum(c.sensors for c in cells) == 4
    assert len(SensorStates.from_rows([])) == 0


def test_shelve_hours_from_the_browser():
    assert parse_shelve_hours(None) == (4.0, False) and parse_shelve_hours(" ") == (4.0, False)
    assert parse_shelve_hours(8) == (8.0, False) and parse_shelve_hours(" 1.5 ") == (1.5, False)
    assert parse_shelve_hours(72) == (72.0, False) and parse_shelve_hours(1) == (1.0, False)
    assert parse_shelve_hours(1e308) == (72.0, True) and parse_shelve_hours(10**400) == (72.0, True)
    assert parse_shelve_hours(0) == (1.0, True) and parse_shelve_hours("-3") == (1.0, True)
    for bad in ("abc", "nan", "inf", "-inf", "1e999", True, [4], {"h": 4}, "9" * 100):
        assert parse_shelve_hours(bad) is None, bad


def test_geometry_as_plotly_arrays():
    from dashboards.model import geometry_xy

    line = {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}
    multi = {"type": "MultiLineString", "coordinates": [[[5, 6], [7, 8]], [[9, 10], [11, 12]]]}
    square = [[0, 0], [1, 0], [1, 1], [0, 0]]
    polygons = {"type": "MultiPolygon", "coordinates": [[square], [square]]}
    point = {"type": "Point", "coordinates": [104.1, 30.6]}
    xs, ys, px, py = geometry_xy([line, multi, point, polygons, {"type": "GeometryCollection"}])
    assert xs == [1, 3, None, 5, 7, None, 9, 11, None, *([0, 1, 1, 0, None] * 2)]
    assert ys[:3] == [2, 4, None] and ys.count(None) == xs.count(None) == 5
    assert (px, py) == ([104.1], [30.6])


# -- the planner in the planner's words (issue 16 item 4) ---------------------------------------
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_WORDS = re.compile(r"[A-Za-z][a-z]+(?:[ ,']+[A-Za-z][a-z]+){2,}")


def test_planner_conditions_by_chinese_label_and_value():
    from dashboards.pages.planner import checked_query
    from gis.filters import Filter

    q = checked_query(
        {
            "layer": "water_pipes",
            "where": ["建设年份＜1990", "材质 in 灰口铸铁,钢", "管径 >= 300"],
            "near": {"layer": "facilities", "distance": "500", "where": ["类型=学校"]},
        }
    )
    assert q.filters == (
        Filter("install_year", "<", 1990),
        Filter("material", "in", ("cast_iron", "steel")),
        Filter("diameter_mm", ">=", 300.0),
    )
    assert q.near[0].filters == (Filter("kind", "=", "school"),)


def _problem(spec: dict):
    from dashboards.pages.planner import checked_query
    from gis.filters import QueryError

    try:
        checked_query(spec)
    except QueryError as exc:
        return exc
    raise AssertionError(f"{spec} was accepted")


def test_planner_errors_are_wholly_in_the_pages_language():
    from dashboards.pages.planner import error_text

    bad = [
        {"layer": "water_pipes", "where": ["age<10"]},
        {"layer": "water_pipes", "where": ["install_year<old"]},
        {"layer": "water_pipes", "where": ["install_year"]},
        {"layer": "no_such"},
        {"layer": "water_pipes", "radius": "-5", "point": "104,30"},
        {"layer": "water_pipes", "radius": "500"},
        {"layer": "water_pipes", "point": "east"},
        {"layer": "water_pipes", "near": {"layer": "facilities"}},
        {"layer": "water_pipes", "alerts": {"kind": "low; drop", "days": "1", "at_least": "1"}},
        {"layer": "water_pipes", "alerts": {"kind": "low", "days": "x", "at_least": "1"}},
        {"layer": "water_pipes", "alerts": {"kind": "low", "days": "3", "at_least": "2.5"}},
    ]
    for spec in bad:
        exc = _problem(spec)
        zh, en = error_text("zh", exc), error_text("en", exc)
        assert zh.startswith("查询条件有误：") and en.startswith("Cannot ask this: "), (zh, en)
        assert not _CJK.search(en), en
        assert not _WORDS.search(zh), zh
        assert exc.key != "other", exc
    # "no column 'age'" becomes the fields there are, by label
    zh = error_text("zh", _problem({"layer": "water_pipes", "where": ["age<10"]}))
    assert "供水管线没有“age”这个字段" in zh and "建设年份 install_year" in zh, zh
    en = error_text("en", _problem({"layer": "water_pipes", "where": ["age<10"]}))
    assert "Water pipes has no field age" in en and "Installed (install_year)" in en, en


def test_every_layer_and_field_has_a_label_in_both_languages():
    from gis.layers import LAYERS

    for layer in LAYERS.values():
        assert f"layer.{layer.name}" in MESSAGES["zh"], layer.name
        for column in layer.column_names:
            assert f"field.{column}" in MESSAGES["zh"], (layer.name, column)
