"""Planner: the GIS questions (gis.filters / gis.planner) as a form and on the map; results as a
table and on the map; export as CSV, GeoJSON and GeoPackage. Planner and admin roles only,
checked on the server in every callback (the map and form are visible, the answers are not).

An area is a district, a point and radius, or a polygon drawn with the map's lasso. Two more
conditions narrow the answer: near features of another layer (within D m of at least one of its
features passing that layer's conditions: ``gis.filters.NearLayer``) and the alert history (at
least N alerts of a kind in the last K days on the feature's sensors, or on sensors within R m:
``gis.filters.AlertHistory``). Everything from the browser is parsed and bounded here first.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import unicodedata
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from dash import Dash, Input, Output, Patch, State, dcc, html, no_update
from dash import ctx as dash_ctx
from shapely.geometry import shape
from shapely.validation import explain_validity

from access.auth import can
from access.classes import highest_class
from access.tokens import record_security_event
from dashboards import queries
from dashboards.areas_map import area_traces, fetch_area_layer
from dashboards.components import data_table, empty_graph, panel, plot_config
from dashboards.context import AppContext, read_districts
from dashboards.figures import build_planner_map_figure
from dashboards.i18n import MESSAGES, dropdown_labels, t
from dashboards.model import display_text
from dashboards.planner_map import (
    ISOLATION_SLOTS,
    district_names,
    field_aliases,
    field_label,
    field_list,
    isolation_answer,
    isolation_traces,
    layer_label,
    pick_traces,
    picked_panel,
    picked_ref,
    readable,
    register_shutdown,
    value_aliases,
    value_label,
    with_district_names,
)
from dashboards.security import SIGNED_IN, Access
from gis.analysis import NetworkCache
from gis.export import build_watermark, export_bytes
from gis.filters import (
    AlertHistory,
    NearLayer,
    QueryError,
    build_query,
    parse_filter,
    query_layers,
)
from gis.layers import LAYERS, NETWORKS
from gis.planner import fetch_planner_query
from gis.postgis import fetch_layer_classes
from gis.renewal import PARTS as RENEWAL_PARTS

PATH = "/planner"
NAV_KEY = "nav.planner"
# anyone sees the form and the empty map; asking and exporting need planner.query (the run
# callback also draws the empty map at load and on "clear": only a click on run is checked)
CALLBACK_ACCESS = {
    "planner-query": Access("planner.query", triggers=("planner-run.n_clicks",)),
    "planner-download": Access("planner.query"),
    # a picked feature and its valve plan: signed in, and the layers' data classes checked in
    # the callbacks (a valve plan is restricted: emergency and admin)
    "planner-pick": Access(SIGNED_IN),
    # which pipes to renew first (issue 17 item 4): a planner's question like the others
    "planner-renewal-note": Access("planner.query"),
    "planner-isolation": Access(SIGNED_IN),
    "planner-shutdown-note": Access(SIGNED_IN),  # alert.act checked in the callback
}
RENEWAL_NETWORKS = NetworkCache()  # graphs and segment isolations kept between questions
MAX_RADIUS_M = 100_000.0  # the whole city fits in 100 km around its centre
TABLE_ROWS = 200
MAX_NEAR_M = 10_000.0  # "near" beyond 10 km is no longer near in one city
MAX_ALERT_DAYS = 3650.0
MAX_ALERT_COUNT = 100_000
_WORD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # alert kinds and quantities are such words
LAYER_CHOICES = (
    "water_pipes",
    "water_nodes",
    "gas_pipes",
    "gas_nodes",
    "power_lines",
    "power_nodes",
    "facilities",
    "sensors",
    "grid_cells",
    "districts",
)
EXPORT_FORMATS = ("csv", "geojson", "gpkg")
FORMAT_NAMES = {"csv": "CSV", "geojson": "GeoJSON", "gpkg": "GeoPackage"}  # the same in zh/en
# the alert-history fields: (id suffix, label key suffix, what the form starts with)
ALERT_FIELDS = (
    ("kind", "kind", "threshold_low"),
    ("quantity", "quantity", "pressure"),
    ("days", "days", "365"),
    ("min", "at_least", None),
    ("radius", "radius", None),
)


def layout(ctx: AppContext, lang: str) -> html.Div:
    user = ctx.current_user()
    if not can(user, "planner.query"):  # the form is for those who may ask: say who may
        return html.Div(className="page planner-page", children=[purpose_panel(lang, user)])
    config = plot_config(lang, scrollZoom=True, displaylogo=False)
    answer_map = empty_graph("planner-map", config, className="map-graph", style={"height": "52vh"})
    fields = html.Div(
        [*_layer_fields(lang), *_area_fields(lang), *_near_fields(lang), *_alert_fields(lang)],
        className="planner-fields",
    )
    dictionary_link = html.P(
        dcc.Link(t(lang, "planner.dictionary"), href="/dictionary"), className="note"
    )
    controls = panel(
        None,
        fields,
        _action_buttons(lang),
        _renewal_fields(lang),
        dictionary_link,
        kind="controls planner-controls",
    )
    status = html.Div(t(lang, "planner.start"), id="planner-message", role="status")
    results = panel(None, status, html.Div(id="planner-table", className="table-scroll"))
    picked = panel(
        None,
        html.Div(t(lang, "planner.pick_hint"), id="planner-pick", className="note"),
        html.Div(id="planner-isolation"),
        kind="pick-panel",
    )
    answers = html.Div(
        [panel(None, answer_map), html.Div([results, picked], className="planner-bottom")],
        className="planner-answers",
    )
    return html.Div(
        className="page planner-page",
        children=[
            dcc.Store(id="planner-query"),
            dcc.Store(id="planner-picked"),
            dcc.Store(id="planner-slots"),
            dcc.Download(id="planner-download"),
            html.Div(className="map-layout", children=[controls, answers]),
        ],
    )


def purpose_panel(lang: str, user: Any) -> html.Section:
    """What the page is for and which role asking needs, for those who may not ask."""
    if user is None:
        need: Any = [
            t(lang, "planner.need_login") + " ",
            html.A(t(lang, "nav.login"), href="/login"),
        ]
    else:
        need = t(lang, "planner.need_role", role=t(lang, "role." + user.role))
    return panel(
        t(lang, "nav.planner"),
        html.P(t(lang, "planner.purpose"), id="planner-purpose"),
        html.P(need, id="planner-need-role", className="note"),
        html.P(dcc.Link(t(lang, "planner.dictionary"), href="/dictionary"), className="note"),
        kind="planner-purpose",
    )


def _text_input(input_id: str, placeholder: str, *, spaced: bool = False, **props: Any):
    """A full-width text field (``spaced``: a little below the one above it)."""
    style = {"width": "100%", "marginTop": "0.3rem"} if spaced else {"width": "100%"}
    return dcc.Input(id=input_id, placeholder=placeholder, type="text", style=style, **props)


def _layer_options(lang: str) -> list[dict[str, str]]:
    return [{"label": layer_label(lang, x), "value": x} for x in LAYER_CHOICES]


def _layer_fields(lang: str) -> list:
    return [
        html.H3(t(lang, "planner.layer")),
        dcc.Dropdown(
            id="planner-layer",
            options=_layer_options(lang),
            value="water_pipes",
            clearable=False,
            labels=dropdown_labels(lang),
        ),
        html.H3(t(lang, "planner.where")),
        dcc.Textarea(
            id="planner-where",
            placeholder=t(lang, "planner.where_example"),
            style={"width": "100%", "height": "4.5rem"},
        ),
        html.Details(
            [
                html.Summary(t(lang, "planner.fields")),
                html.Div(fields_view(lang, "water_pipes"), id="planner-fields"),
            ],
            className="planner-field-list",
        ),
    ]


def fields_view(lang: str, layer: Any) -> list:
    """The chosen layer's fields by label, with the name a condition may use."""
    if layer not in LAYER_CHOICES:
        return []
    items = [
        html.Li([html.Span(label), " ", html.Code(name)]) for label, name in field_list(lang, layer)
    ]
    return [html.Ul(items)]


def _area_fields(lang: str) -> list:
    return [
        html.H3(t(lang, "planner.area")),
        _text_input("planner-district", t(lang, "planner.district")),
        _text_input("planner-point", t(lang, "planner.point"), spaced=True),
        _text_input("planner-radius", t(lang, "planner.radius"), spaced=True),
        html.Div(t(lang, "planner.lasso"), className="note"),
    ]


def _near_fields(lang: str) -> list:
    return [
        html.H3(t(lang, "planner.near")),
        dcc.Dropdown(
            id="planner-near-layer",
            options=_layer_options(lang),
            value=None,
            placeholder=t(lang, "planner.near_layer"),
            labels=dropdown_labels(lang),
        ),
        _text_input("planner-near-distance", t(lang, "planner.near_distance"), spaced=True),
        dcc.Textarea(
            id="planner-near-where",
            placeholder=t(lang, "planner.near_where_example"),
            style={"width": "100%", "height": "2.6rem", "marginTop": "0.3rem"},
        ),
    ]


def _alert_fields(lang: str) -> list:
    labels = []
    for name, key, default in ALERT_FIELDS:
        text = t(lang, f"planner.alert_{key}")
        field = _text_input(f"planner-alert-{name}", text, value=default)
        note = html.Span(text, className="note")
        labels.append(html.Label([note, field], htmlFor=f"planner-alert-{name}"))
    return [
        html.H3(t(lang, "planner.alerts")),
        html.Div(labels, className="alert-history-fields"),
        html.Div(t(lang, "planner.alerts_note"), className="note"),
    ]


def _action_buttons(lang: str) -> html.Div:
    """Run, clear and export, below the fields (which scroll above them: never covered)."""
    run = html.Button(t(lang, "planner.run"), id="planner-run", className="action")
    clear = html.Button(t(lang, "planner.clear_polygon"), id="planner-clear", className="action")
    exports = [
        html.Button(FORMAT_NAMES[f], id=f"planner-export-{f}", className="action")
        for f in EXPORT_FORMATS
    ]
    return html.Div(
        [html.Div([run, clear], className="form-row"), html.Div(exports, className="form-row")],
        className="planner-actions",
    )


def _renewal_fields(lang: str) -> html.Div:
    """Which pipes to renew first: the network, how many, the weights (gis/renewal.py)."""
    networks = [{"label": t(lang, f"layer.{n}_pipes"), "value": n} for n in ("water", "gas")]
    return html.Div(
        [
            html.H3(t(lang, "renewal.title")),
            dcc.Dropdown(
                id="planner-renewal-network", options=networks, value="water", clearable=False
            ),
            _text_input("planner-renewal-top", t(lang, "renewal.top"), spaced=True, value="20"),
            _text_input("planner-renewal-weights", t(lang, "renewal.weights"), spaced=True),
            html.Div(
                html.Button(t(lang, "renewal.run"), id="planner-renewal-run", className="action"),
                className="form-row",
            ),
            html.Div(id="planner-renewal-note", className="note"),
        ],
        className="planner-renewal",
    )


def renewal(ctx: AppContext, _clicks, network, top, weights, lang):
    """The pipes to renew first on the map (pickable, as any answer) and as a table of their
    score's parts; planners and admins only, checked here as well as by the guard."""
    from gis.renewal import RenewalError, Weights
    from gis.renewal_db import fetch_renewal

    lang = ctx.lang(lang)
    if not can(ctx.current_user(), "planner.query"):
        return no_update, no_update, _error(t(lang, "planner.forbidden")), no_update
    try:
        n = max(1, int(_number(top or "20", "top", 0, 1000)))
        chosen = Weights.parse(weights if isinstance(weights, str) else "")
        if network not in ("water", "gas"):
            raise RenewalError(f"no renewal for {display_text(network)[:20]}")
        with ctx.reader.connection() as conn:
            # the network's layers against the role, as the API's door checks them
            if not readable(conn, ctx.current_user(), list(NETWORKS[network])):
                raise PermissionError("a layer of a class above the role")
            fc = fetch_renewal(conn, network, chosen, top=n, cache=RENEWAL_NETWORKS)
    except (QueryError, PermissionError) as exc:
        return no_update, no_update, _error(failure_text(lang, exc)), no_update
    except RenewalError:
        return no_update, no_update, _error(t(lang, "renewal.bad_weights")), no_update
    except queries.DatabaseUnavailable:
        return no_update, no_update, _error(t(lang, "banner.db_down")), no_update
    feats = fc["features"]
    meta = fc["renewal"]
    figure = planner_map(ctx, lang, f"{network}_pipes", feats, None)
    note = t(lang, "renewal.done", n=len(feats), of=meta["pipes_scored"], year=meta["year"])
    weights_shown = " · ".join(
        f"{t(lang, 'renewal.part.' + p)} {meta['weights'][p]:.2f}" for p in RENEWAL_PARTS
    )
    return figure, renewal_table(lang, feats), html.Span(note, className="msg-ok"), weights_shown


def renewal_table(lang: str, feats: list[dict[str, Any]]) -> html.Table:
    """Rank, pipe, score and each part (0-1), the parts the data does not give marked."""
    head = [t(lang, "renewal.rank"), t(lang, "renewal.pipe"), t(lang, "renewal.score")]
    head += [t(lang, "renewal.part." + p) for p in RENEWAL_PARTS]
    rows = []
    for f in feats[:TABLE_ROWS]:
        p = f["properties"]
        unknown = set((p.get("unknown_parts") or "").split(","))
        cells = [html.Td(str(p["rank"])), html.Td(display_text(p["pipe_id"]))]
        cells.append(html.Td(f"{p['score']:.1f}", className="renewal-score"))
        cells += [
            html.Td(f"{p['part_' + part]:.2f}" + (" ?" if part in unknown else ""))
            for part in RENEWAL_PARTS
        ]
        rows.append(html.Tr(cells, **{"data-id": display_text(p["pipe_id"])}))
    return data_table(head, rows, "planner-table renewal-table")


# -- the question from the browser, checked -------------------------------------------------------
def spec_from_form(
    layer: Any,
    where: Any,
    district: Any,
    point: Any,
    radius: Any,
    polygon: Any,
    near: dict[str, Any] | None = None,
    alerts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The form as a plain query spec (checked by ``checked_query``)."""
    return {
        "layer": layer,
        "where": _lines(where),
        "district": _text(district),
        "point": _text(point),
        "radius": _text(radius),
        "polygon": polygon,
        "near": near or None,
        "alerts": alerts or None,
    }


def near_from_form(layer: Any, distance: Any, where: Any) -> dict[str, Any] | None:
    """The near-another-layer part of the form, or None when it is left empty."""
    if layer in (None, "") and _text(distance) is None and not _lines(where):
        return None
    return {"layer": layer, "distance": _text(distance), "where": _lines(where)}


def alerts_from_form(
    kind: Any, quantity: Any, days: Any, at_least: Any, radius: Any
) -> dict[str, Any] | None:
    """The alert-history part of the form, or None while "at least N alerts" is empty (the
    other fields come filled with the usual question: low pressure in the last year)."""
    if _text(at_least) is None:
        return None
    return {
        "kind": _text(kind),
        "quantity": _text(quantity),
        "days": _text(days),
        "at_least": _text(at_least),
        "radius": _text(radius),
    }


def _text(value: Any) -> str | None:
    """A form field as stripped text (at most 200 characters), None when empty."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()[:200]
    return text or None


def _lines(value: Any) -> list[str]:
    """Conditions, one a line (a list from a stored spec, text from the form); at most 20."""
    items = value if isinstance(value, list) else str(value or "").splitlines()
    return [str(w).strip()[:200] for w in items if isinstance(w, str) and w.strip()][:20]


def _number(text: Any, what: str, low: float, high: float, *, unit: str = "") -> float:
    """A finite number in (low, high] from the form, or QueryError saying what is wanted
    (``what``: a ``planner.what.*`` key)."""
    value = None
    if isinstance(text, str) and len(text) <= 32:
        try:
            value = float(unicodedata.normalize("NFKC", text))
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise QueryError(
            f"{what} must be a number, got {display_text(text)!r}",
            "number",
            what=what,
            value=display_text(text),
        )
    if not low < value <= high:
        raise QueryError(
            f"{what} must be more than {low:g} and at most {high:,.0f}{unit}",
            "range",
            what=what,
            low=low,
            high=high,
            unit=unit,
        )
    return value


def check_polygon(polygon: Any) -> dict[str, Any] | None:
    """A GeoJSON polygon that is closed and simple, or QueryError."""
    if not polygon:
        return None
    try:
        geom = shape(polygon)
    except Exception as exc:  # shapely raises several types for malformed input
        raise QueryError(f"polygon: {exc}", "polygon_bad") from None
    if geom.geom_type != "Polygon" or geom.is_empty:
        raise QueryError("the area must be one polygon", "polygon_one")
    if not geom.is_valid:
        raise QueryError(
            f"the polygon is not valid ({explain_validity(geom)}): redraw it", "polygon_invalid"
        )
    return polygon  # type: ignore[no-any-return]


def checked_near(near: Any):
    """A gis.filters.NearLayer from the spec's near part, or QueryError."""
    if not isinstance(near, dict):
        raise QueryError("near: not a question", "not_a_question")
    other = near.get("layer")
    if other in (None, ""):
        raise QueryError("near: choose the other layer", "near_layer")
    if other not in LAYER_CHOICES:
        raise QueryError(
            f"near: unknown layer {display_text(other)!r}", "unknown_layer", layer=other
        )
    if near.get("distance") is None:
        raise QueryError(f"near: how far from {other}? (metres)", "near_distance", layer=other)
    distance = _number(near.get("distance"), "distance", 0, MAX_NEAR_M, unit="m")
    aliases, values = field_aliases(other), value_aliases()
    filters = tuple(parse_filter(other, w, aliases, values) for w in _lines(near.get("where")))
    return NearLayer(other, distance, filters)


def checked_alerts(spec: Any):
    """A gis.filters.AlertHistory from the spec's alert part ("at least N" is the function's
    "more than N - 1"), or QueryError."""
    if not isinstance(spec, dict):
        raise QueryError("alerts: not a question", "not_a_question")
    kind = spec.get("kind")
    if not isinstance(kind, str) or not _WORD.match(kind):
        raise QueryError(
            f"alert kind is a word like threshold_low, got {display_text(kind)!r}",
            "kind",
            value=display_text(kind),
        )
    quantity = spec.get("quantity")
    if quantity is not None and (not isinstance(quantity, str) or not _WORD.match(quantity)):
        raise QueryError(
            f"quantity is a word like pressure, got {display_text(quantity)!r}",
            "quantity",
            value=display_text(quantity),
        )
    days = _number(spec.get("days"), "days", 0, MAX_ALERT_DAYS)
    at_least = _number(spec.get("at_least"), "at_least", 0, MAX_ALERT_COUNT)
    if at_least != int(at_least):
        raise QueryError(
            f"the number of alerts must be a whole number, got {at_least:g}",
            "whole",
            what="at_least",
            value=f"{at_least:g}",
        )
    radius = (
        _number(spec.get("radius"), "alert_radius", 0, MAX_NEAR_M, unit="m")
        if spec.get("radius") is not None
        else None
    )
    return AlertHistory(
        kind=kind,
        quantity=quantity,
        since_days=days,
        more_than=int(at_least) - 1,
        radius_m=radius,
    )


def checked_query(spec: dict[str, Any]):
    """A checked PlannerQuery from a spec, or gis.filters.QueryError with a readable reason."""
    if not isinstance(spec, dict):
        raise QueryError("not a question", "not_a_question")
    layer = spec.get("layer")
    if layer not in LAYER_CHOICES:
        raise QueryError(f"unknown layer {display_text(layer)!r}", "unknown_layer", layer=layer)
    radius = None
    if spec.get("radius"):
        radius = _number(_text(spec["radius"]), "radius", 0, MAX_RADIUS_M, unit="m")
        if not spec.get("point"):
            raise QueryError("a radius needs a point (lon,lat)", "needs_point")
    # a name (锦江区, 锦江, Jinjiang) or an adcode: resolved when the question runs
    district = _text(spec.get("district")) or None
    point = _text(spec.get("point"))
    query = build_query(
        layer,
        where=[],
        district=district,
        polygon=check_polygon(spec.get("polygon")),
        point=unicodedata.normalize("NFKC", point) if point else None,
        radius_m=radius,
        limit=5000,
    )
    aliases, values = field_aliases(layer), value_aliases()
    filters = tuple(parse_filter(layer, w, aliases, values) for w in _lines(spec.get("where")))
    near = (checked_near(spec["near"]),) if spec.get("near") else ()
    history = checked_alerts(spec["alerts"]) if spec.get("alerts") else None
    return dataclasses.replace(query, filters=filters, near=near, alerts=history).check()


def error_text(lang: str, exc: QueryError) -> str:
    """Why a question cannot be asked, wholly in the page's language: the problem's key and
    values (``gis.filters.QueryError``) through the catalogue, layers and fields by label."""
    key = f"planner.error.{exc.key}"
    if key not in MESSAGES["zh"]:
        key = "planner.error.other"
    v = dict(exc.values)
    if "layer" in v:
        v["layer"] = layer_label(lang, str(v["layer"])) if v["layer"] in LAYERS else v["layer"]
    if exc.key == "unknown_field" and exc.values.get("layer") in LAYERS:
        sep = "、" if lang == "zh" else ", "
        v["fields"] = sep.join(
            f"{label} {name}" if lang == "zh" else f"{label} ({name})"
            for label, name in field_list(lang, str(exc.values["layer"]))
        )
    if exc.key == "bad_value":
        v["field"] = field_label(lang, str(v["field"]))
        v["type"] = t(lang, f"type.{v['type']}")
    if exc.key == "unknown_district":
        names = v.get("known_en" if lang == "en" else "known_zh") or []
        v["known"] = ("、" if lang == "zh" else ", ").join(map(str, names))
    if "what" in v:
        v["what"] = t(lang, f"planner.what.{v['what']}")
    if "high" in v:  # "more than 0 and at most 10,000 m": the unit once, on the bound
        n = f"{float(v['high']):,.0f}"
        v["high"] = t(lang, "planner.metres", n=n) if v.get("unit") == "m" else n
        v["low"] = f"{float(v['low']):g}"
    v = {k: display_text(x) if isinstance(x, str) else x for k, x in v.items()}
    try:
        reason = t(lang, key, **v)
    except (KeyError, IndexError):  # a problem raised without the values its message names
        reason = t(lang, "planner.error.other")
    return t(lang, "planner.invalid", reason=reason)


def lasso_polygon(selected: Any) -> dict[str, Any] | None:
    """The map's lasso as a GeoJSON polygon (lon/lat), or None."""
    lasso = (selected or {}).get("lassoPoints") or {}
    xs, ys = lasso.get("x") or [], lasso.get("y") or []
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    ring = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


# -- callbacks ------------------------------------------------------------------------------------
def run(ctx: AppContext, _run, clear, layer, where, district, point, radius, selected, *more):
    """Ask the form's question (planners and admins only) and show the answer on the map and
    as a table; the spec goes to the browser for the export buttons. Every outcome (the
    answer's size, nothing found, why it cannot be asked) is said in one place, the status
    line above the table; a new question clears the last valve plan."""
    near_layer, near_distance, near_where, *history, lang = more
    lang = ctx.lang(lang)
    polygon = None if dash_ctx.triggered_id == "planner-clear" else lasso_polygon(selected)
    if dash_ctx.triggered_id != "planner-run":
        hint = html.Span(t(lang, "planner.start"), className="note")
        figure = planner_map(ctx, lang, layer, [], polygon)
        return figure, [], hint, None, [], slots_at(figure)
    if not can(ctx.current_user(), "planner.query"):
        return no_update, [], _error(t(lang, "planner.forbidden")), None, [], no_update
    spec = spec_from_form(
        layer,
        where,
        district,
        point,
        radius,
        polygon,
        near=near_from_form(near_layer, near_distance, near_where),
        alerts=alerts_from_form(*history),
    )
    try:
        feats = ask(ctx, spec)[0]["features"]
    except (PermissionError, QueryError, queries.DatabaseUnavailable) as exc:
        return no_update, [], _error(failure_text(lang, exc)), None, [], no_update
    if not feats:
        message = html.Span(t(lang, "planner.empty"), className="msg-empty")
        figure = planner_map(ctx, lang, layer, [], polygon)
        return figure, [], message, spec, [], slots_at(figure)
    message = html.Span(t(lang, "planner.found", n=len(feats)), className="msg-ok")
    figure = planner_map(ctx, lang, layer, feats, polygon)
    feats = with_district_names(feats, district_names(lang, read_answer_districts(ctx)))
    return figure, result_table(lang, feats), message, spec, [], slots_at(figure)


def read_answer_districts(ctx: AppContext) -> list:
    """The districts (shared cache), none while the database is down."""
    try:
        with ctx.reader.connection() as conn:
            return read_districts(ctx, conn)
    except queries.DatabaseUnavailable:
        return []


def slots_at(figure: dict[str, Any]) -> int:
    """Where the figure's valve-plan traces begin (its last ``ISOLATION_SLOTS``)."""
    return len(figure["data"]) - ISOLATION_SLOTS


def failure_text(lang: str, exc: Exception) -> str:
    """Why a question got no answer, in the page's language."""
    if isinstance(exc, PermissionError):
        return t(lang, "planner.restricted")
    if isinstance(exc, QueryError):
        return error_text(lang, exc)
    return t(lang, "banner.db_down")


def export(ctx: AppContext, _c, _g, _p, spec, lang):
    """The answer to the stored spec as a file (planners and admins only)."""
    lang = ctx.lang(lang)
    fmt = str(dash_ctx.triggered_id or "").removeprefix("planner-export-")
    if fmt not in EXPORT_FORMATS:
        return no_update, no_update
    if not can(ctx.current_user(), "planner.query"):
        return no_update, _error(t(lang, "planner.forbidden"))
    if not spec or not isinstance(spec, dict):
        return no_update, _error(t(lang, "planner.run_first"))
    try:  # the query is asked again on the server: the browser never holds the results
        fc, classification, layers = ask(ctx, spec)
    except (PermissionError, QueryError, queries.DatabaseUnavailable) as exc:
        return no_update, _error(failure_text(lang, exc))
    name = f"cityops-{spec['layer']}"
    user = ctx.current_user()
    mark = None
    if classification != "public":  # who took it, when, and its class, inside the file
        at = datetime.now(ZoneInfo(ctx.settings.timezone)).isoformat(timespec="seconds")
        mark = build_watermark(user.username, at, classification, layers)
    body = export_file(fc, fmt, name, mark)
    if body is None:
        return no_update, _error(t(lang, "planner.nothing_to_export"))
    if mark is not None:  # recorded like the API's exports (security_audit, SM3-chained)
        with ctx.writer.connection() as conn:
            record_security_event(
                conn,
                user.username,
                "export",
                ",".join(layers),
                {
                    "via": "dashboard",
                    "role": user.role,
                    "classification": classification,
                    "layers": layers,
                    "features": len(fc.get("features") or []),
                    "bytes": len(body),
                    "format": fmt,
                    "route": "/planner",
                },
            )
    content = base64.b64encode(body).decode("ascii")
    return {"content": content, "filename": f"{name}.{fmt}", "base64": True}, no_update


def ask(ctx: AppContext, spec: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """The answer to a spec from the browser as GeoJSON, its data class and the layers it
    read; the spec checked first (QueryError), and every layer it reads against the user's
    role (PermissionError: a planner reads no restricted layer here either)."""
    query = checked_query(spec)
    layers = list(dict.fromkeys(query_layers(query)))
    user = ctx.current_user()
    with ctx.reader.connection() as conn:
        if not readable(conn, user, layers):
            raise PermissionError("a layer of a class above the role")
        classes = fetch_layer_classes(conn)
        pairs = [(n, classes.get(n, "restricted")) for n in layers]
        return fetch_planner_query(conn, query), highest_class(c for _, c in pairs), layers


def export_file(
    fc: dict[str, Any], fmt: str, name: str, watermark: dict[str, Any] | None = None
) -> bytes | None:
    """The answer as a file in ``fmt`` with the ``watermark`` inside (``gis.export``); None
    for a GeoPackage without any geometry (a layer needs one, while CSV and GeoJSON can say
    "nothing")."""
    if fmt == "gpkg" and not any(f.get("geometry") for f in fc.get("features") or []):
        return None
    try:
        return export_bytes(fc, fmt, name=name, watermark=watermark)[0]
    except ValueError as exc:  # gis.export's own rule, should it differ from ours
        if "nothing to write" not in str(exc):
            raise
        return None


def _error(text: str) -> html.Span:
    return html.Span(text, className="msg-error")


def result_table(lang: str, feats: list[dict[str, Any]]) -> html.Table:
    """The first rows: up to eight columns by label, always with distance_m and alert_count
    when the question produced them (they are what a near or alert-history question is
    about); values as the user reads them (codes by name, numbers rounded)."""
    seen: list[str] = []
    for f in feats[:TABLE_ROWS]:
        for k in f.get("properties") or {}:
            if k not in seen:
                seen.append(k)
    extras = [k for k in ("distance_m", "alert_count") if k in seen]
    keys = [k for k in seen if k not in extras][: 8 - len(extras)] + extras
    rows = [
        html.Tr(
            [html.Td(value_label(lang, f["properties"].get(k, ""))) for k in keys],
            **{"data-id": display_text(f.get("id"))},
        )
        for f in feats[:TABLE_ROWS]
    ]
    head = [html.Th(field_label(lang, k), **{"data-field": k}) for k in keys]
    return data_table(head, rows, "planner-table")


def planner_map(
    ctx: AppContext,
    lang: str,
    layer: Any,
    feats: list[dict[str, Any]],
    polygon: dict[str, Any] | None,
) -> dict[str, Any]:
    """The map with the lassoed area, the metered areas (for those who may ask: they name the
    utility's meters) and the answer, each feature pickable (without district outlines while
    the database is down)."""
    areas: list[dict[str, Any]] = []
    try:
        with ctx.reader.connection() as conn:
            districts = read_districts(ctx, conn)
            if can(ctx.current_user(), "planner.query"):
                areas = fetch_area_layer(conn)
    except queries.DatabaseUnavailable:
        districts = []
    fig = build_planner_map_figure(districts, feats, polygon, lang=lang)
    # the answer's plain traces (no ids, coordinates on hover) give way to pickable ones
    results = t(lang, "planner.results")
    fig["data"] = [d for d in fig["data"] if d.get("name") != results]
    fig["data"].extend(area_traces(areas, lang))
    if feats and layer in LAYER_CHOICES:  # on top: the pipes are what a click picks
        shown = with_district_names(feats, district_names(lang, districts))
        fig["data"].extend(pick_traces(lang, layer, shown))
    # the last traces: where "isolate this pipe" draws its plan (each plan replaces the last)
    fig["data"].extend(isolation_traces(lang, [], slots=True))
    return fig


def show_fields(ctx: AppContext, layer, lang):
    return fields_view(ctx.lang(lang), layer)


def pick(ctx: AppContext, click, lang):
    """The clicked feature's attributes, alerts and (for a pipe) the isolate button."""
    lang = ctx.lang(lang)
    ref = picked_ref(click)
    if ref is None:
        return no_update, no_update
    return picked_panel(ctx, lang, "planner", *ref)


def isolate(ctx: AppContext, _clicks, picked, at, lang):
    """The valves to close for the picked pipe and what loses supply: listed, and drawn over
    the planner's map (appended to the figure the question drew)."""
    lang = ctx.lang(lang)
    view, features = isolation_answer(ctx, lang, picked, "planner")
    if not features:
        return view, no_update
    if not isinstance(at, int) or not 0 <= at <= 10_000:  # the map drew no slots for a plan
        return view, no_update
    figure = Patch()  # the answer stays; the plan goes into the figure's last traces
    for i, trace in enumerate(isolation_traces(lang, features, slots=True)):
        figure["data"][at + i] = trace
    return view, figure


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("planner-map", "figure"),
        Output("planner-table", "children"),
        Output("planner-message", "children"),
        Output("planner-query", "data"),
        Output("planner-isolation", "children"),
        Output("planner-slots", "data"),
        Input("planner-run", "n_clicks"),
        Input("planner-clear", "n_clicks"),
        State("planner-layer", "value"),
        State("planner-where", "value"),
        State("planner-district", "value"),
        State("planner-point", "value"),
        State("planner-radius", "value"),
        State("planner-map", "selectedData"),
        State("planner-near-layer", "value"),
        State("planner-near-distance", "value"),
        State("planner-near-where", "value"),
        *(State(f"planner-alert-{name}", "value") for name, _key, _default in ALERT_FIELDS),
        State("lang", "data"),
    )(partial(run, ctx))
    app.callback(
        Output("planner-download", "data"),
        Output("planner-message", "children", allow_duplicate=True),
        *(Input(f"planner-export-{f}", "n_clicks") for f in EXPORT_FORMATS),
        State("planner-query", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(export, ctx))
    app.callback(
        Output("planner-map", "figure", allow_duplicate=True),
        Output("planner-table", "children", allow_duplicate=True),
        Output("planner-message", "children", allow_duplicate=True),
        Output("planner-renewal-note", "children"),
        Input("planner-renewal-run", "n_clicks"),
        State("planner-renewal-network", "value"),
        State("planner-renewal-top", "value"),
        State("planner-renewal-weights", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(renewal, ctx))
    app.callback(
        Output("planner-fields", "children"),
        Input("planner-layer", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(show_fields, ctx))
    app.callback(
        Output("planner-pick", "children"),
        Output("planner-picked", "data"),
        Input("planner-map", "clickData"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(pick, ctx))
    app.callback(
        Output("planner-isolation", "children", allow_duplicate=True),
        Output("planner-map", "figure", allow_duplicate=True),
        Input("planner-isolate", "n_clicks"),
        State("planner-picked", "data"),
        State("planner-slots", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(isolate, ctx))
    register_shutdown(app, ctx, "planner", "planner-picked")
