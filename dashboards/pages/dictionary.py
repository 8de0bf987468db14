"""The data dictionary (issue 17 item 6): every layer's fields with their names, units, types
and rules, each layer's data class and source, the measured quantities and the sensor types, in
the page's language, and the same as a JSON or CSV file (``gis.dictionary``: the rules are the
database's own CHECK constraints). Open to everyone: it describes the data, it holds none."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import data_table, db_down_banner, panel
from dashboards.context import AppContext
from dashboards.i18n import t
from gis.dictionary import dictionary_csv
from gis.dictionary_db import fetch_dictionary

PATH = "/dictionary"
NAV_KEY = "nav.dictionary"
DICTIONARY_TTL_S = 300.0  # the layers' classes and sources change with a load, rarely


def read_dictionary(ctx: AppContext) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        with ctx.reader.connection() as conn:
            return fetch_dictionary(conn)

    return ctx.cache.get("dictionary", DICTIONARY_TTL_S, fetch)


def layout(ctx: AppContext, lang: str) -> html.Div:
    try:
        doc = read_dictionary(ctx)
    except queries.DatabaseUnavailable:
        return html.Div(className="page dictionary-page", children=db_down_banner(lang))
    downloads = html.Div(
        [
            html.Button(t(lang, "dict.download_json"), id="dict-json", className="action"),
            html.Button(t(lang, "dict.download_csv"), id="dict-csv", className="action"),
            dcc.Download(id="dict-download"),
        ],
        className="form-row",
    )
    intro = panel(t(lang, "dict.title"), html.P(t(lang, "dict.intro")), downloads)
    layers = [_layer_panel(lang, layer) for layer in doc["layers"]]
    return html.Div(
        className="page dictionary-page",
        children=[
            intro,
            *layers,
            panel(t(lang, "dict.quantities"), _quantities(lang, doc["quantities"])),
            panel(t(lang, "dict.sensor_types"), _sensor_types(lang, doc["sensor_types"])),
            panel(t(lang, "dict.scales"), _scales(lang, doc["scales"])),
        ],
    )


def _rule(lang: str, field: dict[str, Any]) -> Any:
    if field["allowed"]:
        return html.Ul(
            [html.Li([html.Code(a["code"]), f" {a[lang]}"]) for a in field["allowed"]],
            className="dict-values",
        )
    parts = []
    if field["min"] is not None:
        parts.append(f"{'≥' if field.get('min_inclusive', True) else '>'} {field['min']:g}")
    if field["max"] is not None:
        parts.append(f"{'≤' if field.get('max_inclusive', True) else '<'} {field['max']:g}")
    return "，".join(parts) if lang == "zh" else ", ".join(parts)


def _layer_panel(lang: str, layer: dict[str, Any]) -> html.Section:
    head = [t(lang, f"dict.{k}") for k in ("field", "name", "unit", "type", "required", "rule")]
    rows = [
        html.Tr(
            [
                html.Td(html.Code(f["name"])),
                html.Td(f["label"][lang]),
                html.Td(f["unit_zh"] if lang == "zh" else f["unit"]),
                html.Td(t(lang, f"type.{f['type']}")),
                html.Td(t(lang, "value.true") if f["required"] else ""),
                html.Td(_rule(lang, f)),
            ]
        )
        for f in layer["fields"]
    ]
    facts = html.P(
        [
            html.Code(layer["name"]),
            " · ",
            t(lang, "dict.geometry", geometry=layer["geometry"], crs=layer["crs"]),
            " · ",
            t(lang, f"dict.class.{layer['classification']}"),
            *(
                [" · ", t(lang, "dict.source"), html.Code(layer["source"])]
                if layer["source"]
                else []
            ),
        ],
        className="note",
    )
    return panel(
        layer["label"][lang],
        facts,
        data_table(head, rows, "dict-table"),
        kind="dict-layer",
        id=f"dict-{layer['name']}",
    )


def _quantities(lang: str, quantities: list[dict[str, Any]]) -> html.Table:
    head = [t(lang, f"dict.{k}") for k in ("quantity", "name", "unit", "accepted", "range")]
    rows = [
        html.Tr(
            [
                html.Td(html.Code(q["name"])),
                html.Td(q["label"][lang]),
                html.Td(q["unit"]),
                html.Td(", ".join(q["accepted_units"])),
                html.Td(f"{q['physical_min']:g} … {q['physical_max']:g}"),
            ]
        )
        for q in quantities
    ]
    return data_table(head, rows, "dict-table")


def _sensor_types(lang: str, types: list[dict[str, Any]]) -> html.Table:
    keys = ("sensor_type", "name", "utility", "quantities_measured", "interval")
    head = [t(lang, f"dict.{k}") for k in keys]
    rows = [
        html.Tr(
            [
                html.Td(html.Code(s["name"])),
                html.Td(s["label"][lang]),
                html.Td(t(lang, f"utility.{s['utility']}")),
                html.Td(", ".join(t(lang, f"quantity.{q}") for q in s["quantities"])),
                html.Td(t(lang, "dict.seconds", n=f"{s['expected_interval_s']:g}")),
            ]
        )
        for s in types
    ]
    return data_table(head, rows, "dict-table")


def _scales(lang: str, bands: list[dict[str, Any]]) -> html.Table:
    head = [t(lang, f"dict.{k}") for k in ("band", "zoom", "scale", "simplified", "drawn")]
    rows = []
    for b in bands:
        kinds = b["node_kinds"]
        drawn = (
            t(lang, "dict.all_nodes")
            if kinds == "all"
            else "、".join(t(lang, f"value.{k}") for k in kinds)
            if lang == "zh"
            else ", ".join(t(lang, f"value.{k}") for k in kinds)
        )
        if b["links_from_diameter_mm"]:
            drawn = t(lang, "dict.links_from", mm=f"{b['links_from_diameter_mm']:g}") + "; " + drawn
        rows.append(
            html.Tr(
                [
                    html.Td(t(lang, f"dict.band.{b['band']}")),
                    html.Td(f"{b['zoom'][0]}-{b['zoom'][1]}"),
                    html.Td(f"{b['scale'][0]} – {b['scale'][1]}"),
                    html.Td(t(lang, "dict.metres", n=f"{b['simplified_m']:g}")),
                    html.Td(drawn),
                ]
            )
        )
    return data_table(head, rows, "dict-table")


def download(ctx: AppContext, json_clicks, csv_clicks, lang):
    """The whole dictionary as a file: JSON (the document) or CSV (one row per field,
    quantity and sensor type, with a byte-order mark so Excel reads it as UTF-8)."""
    from dash import ctx as dash_ctx

    which = dash_ctx.triggered_id
    if which not in ("dict-json", "dict-csv") or not (json_clicks or csv_clicks):
        return no_update
    try:
        doc = read_dictionary(ctx)
    except queries.DatabaseUnavailable:
        return no_update
    if which == "dict-json":
        text = json.dumps(doc, ensure_ascii=False, indent=1)
        return {"content": text, "filename": "cityops-dictionary.json", "type": "application/json"}
    return {
        "content": "\ufeff" + dictionary_csv(doc),
        "filename": "cityops-dictionary.csv",
        "type": "text/csv",
    }


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("dict-download", "data"),
        Input("dict-json", "n_clicks"),
        Input("dict-csv", "n_clicks"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(download, ctx))
