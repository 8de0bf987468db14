"""Picking a pipe, line or node on a map (the planner and map pages), in the user's words.

Each feature drawn carries its layer and id (``customdata``) and shows its attributes by label on
hover; the picked feature's panel lists its attributes, its alerts and, for a pipe or line,
"isolate this pipe": the valves to close and what loses supply (``gis.analysis.fetch_isolation``),
listed and drawn over the map. The builders are pure (values in, components and plain Plotly
JSON out); the last three functions read, through the page's ``AppContext``, and check the
signed-in user's data classes first.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dash import Dash, Input, Output, State, dcc, html, no_update

from access.auth import can
from access.classes import may_read
from dashboards import queries
from dashboards.components import catalogue_label, severity_badge
from dashboards.context import AppContext, read_districts
from dashboards.figures import IMPACT_STYLE
from dashboards.i18n import MESSAGES, t
from dashboards.model import display_text, local_time, plot_text
from gis.layers import LAYERS, NETWORKS, get_layer
from gis.planner import feature_assets, fetch_asset_alerts, fetch_feature
from gis.postgis import fetch_layer_classes

# the link layers that can be isolated, and their network
LINK_NETWORKS = {"water_pipes": "water", "gas_pipes": "gas", "power_lines": "power"}
PICK_COLOUR = "#ff7a45"
HOVER_FIELDS = 9  # attributes shown on hover (the panel has them all)
_UNIT = re.compile(r"（.*?）|\s*\(.*?\)")  # a label's unit: 管径（mm）, Diameter (mm)


# -- words --------------------------------------------------------------------------------------
def layer_label(lang: str, name: str) -> str:
    return catalogue_label(lang, "layer.", name)


def field_label(lang: str, name: str) -> str:
    return catalogue_label(lang, "field.", name)


def value_label(lang: str, value: Any) -> str:
    """A value as the user reads it: codes of the catalogue by name (cast_iron: 灰口铸铁),
    numbers with at most one decimal, the rest as text."""
    if isinstance(value, bool):
        return t(lang, f"value.{str(value).lower()}")
    if isinstance(value, float):
        return f"{value:,.1f}" if math.isfinite(value) else "—"
    if value is None or value == "":
        return "—"
    return catalogue_label(lang, "value.", str(value)) if isinstance(value, str) else str(value)


def field_aliases(layer_name: str) -> dict[str, str]:
    """What a planner may write for a field in a condition besides its name: its Chinese
    label without the unit (建设年份, 管径), lower case."""
    aliases = {}
    for column in get_layer(layer_name).column_names:
        key = "field." + column
        if key in MESSAGES["zh"]:
            aliases[_UNIT.sub("", MESSAGES["zh"][key]).strip().lower()] = column
    return aliases


def value_aliases() -> dict[str, str]:
    """What a planner may write for a coded value besides its code: its Chinese label
    (学校: school, 灰口铸铁: cast_iron), lower case."""
    return {
        label.lower(): key.removeprefix("value.")
        for key, label in MESSAGES["zh"].items()
        if key.startswith("value.")
    }


def field_list(lang: str, layer_name: str) -> list[tuple[str, str]]:
    """(label, name) of each field of a layer, in the catalogue's order."""
    return [(field_label(lang, c), c) for c in get_layer(layer_name).column_names]


def district_names(lang: str, districts: Iterable[Any]) -> dict[int, str]:
    """adcode -> the district's name in the page's language (``model.District`` rows)."""
    return {d.adcode: (d.name_en if lang == "en" and d.name_en else d.name_zh) for d in districts}


def named_district(props: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    """Attributes with ``district_adcode`` shown as the district's name and code (a copy)."""
    code = props.get("district_adcode")
    return {**props, "district_adcode": f"{names[code]} {code}"} if code in names else props


def with_district_names(features: list[dict[str, Any]], names: dict[int, str]) -> list[dict]:
    """The features with their district by name (copies: the answer itself is not changed)."""
    return [{**f, "properties": named_district(f.get("properties") or {}, names)} for f in features]


def attribute_rows(lang: str, props: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of a feature's attributes (not the role the analysis gave it)."""
    return [(field_label(lang, k), value_label(lang, v)) for k, v in props.items() if k != "role"]


def hover_text(lang: str, layer: str, props: dict[str, Any]) -> str:
    """A feature's hover label: its layer and id, then its first attributes, HTML-escaped."""
    fid = props.get(get_layer(layer).id_column, "")
    lines = [f"<b>{plot_text(layer_label(lang, layer))} {plot_text(str(fid))}</b>"]
    rows = attribute_rows(lang, props)[1:HOVER_FIELDS]
    lines += [f"{plot_text(k)}: {plot_text(v)}" for k, v in rows]
    return "<br>".join(lines)


# -- what the browser sends back ----------------------------------------------------------------
def picked_ref(click: Any) -> tuple[str, str] | None:
    """(layer, id) of a clicked pick handle, checked: a known layer and a short id."""
    points = (click or {}).get("points") if isinstance(click, dict) else None
    data = points[0].get("customdata") if isinstance(points, list) and points else None
    if not isinstance(data, list) or len(data) != 2:
        return None
    layer, fid = data
    if layer not in LAYERS or not isinstance(fid, str | int) or len(str(fid)) > 64:
        return None
    return layer, str(fid)


# -- traces -------------------------------------------------------------------------------------
def _line_parts(geometry: dict[str, Any]) -> list[list[list[float]]]:
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    if kind == "LineString":
        return [coords]
    if kind == "MultiLineString":
        return list(coords)
    return []


def midpoint(part: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The point halfway along a line (in degrees: a pick handle, not a measurement)."""
    steps = [math.dist(a[:2], b[:2]) for a, b in itertools.pairwise(part)]
    half, walked = sum(steps) / 2, 0.0
    for (a, b), step in zip(itertools.pairwise(part), steps, strict=True):
        if step and walked + step >= half:
            f = (half - walked) / step
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        walked += step
    return float(part[0][0]), float(part[0][1])


def pick_traces(lang: str, layer: str, features: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answer's features drawn pickable: lines whose every vertex carries the feature's
    layer and id, a handle with its attributes at each line's middle (a line between two far
    vertices is easiest to hit there), and points."""
    lx: list[float | None] = []
    ly: list[float | None] = []
    ldata: list[Any] = []
    px: list[float] = []
    py: list[float] = []
    pdata: list[Any] = []
    ptext: list[str] = []
    for f in features:
        props, geom = f.get("properties") or {}, f.get("geometry") or {}
        ref, text = [layer, str(f.get("id"))], hover_text(lang, layer, props)
        parts = _line_parts(geom)
        for part in parts:
            lx += [p[0] for p in part] + [None]
            ly += [p[1] for p in part] + [None]
            ldata += [ref] * len(part) + [None]
        if parts:
            x, y = midpoint(parts[0])
        elif geom.get("type") == "Point":
            x, y = geom["coordinates"][:2]
        else:
            continue
        px.append(x)
        py.append(y)
        pdata.append(ref)
        ptext.append(text)
    name = t(lang, "planner.results")
    traces = []
    if lx:
        traces.append(
            {
                "type": "scattergl",
                "x": lx,
                "y": ly,
                "mode": "lines",
                "line": {"color": PICK_COLOUR, "width": 3},
                "name": name,
                # the vertices name their feature; its attributes are on the middle handle
                # (a label per vertex would repeat them: 1.3 MB for the demo's 1,472 pipes)
                "customdata": ldata,
                "hovertemplate": "%{customdata[1]}<extra></extra>",
                "meta": {"pick": layer},
            }
        )
    if px:
        if lx:  # on lines, a small dot in the middle: the line is what is read
            handles = handle_trace(name, px, py, pdata, ptext, size=6, colour="#ffd591")
            traces.append(handles | {"showlegend": False})
        else:
            traces.append(handle_trace(name, px, py, pdata, ptext, size=11))
    return traces


def handle_trace(
    name: str,
    xs: Sequence[float],
    ys: Sequence[float],
    refs: Sequence[Any],
    texts: Sequence[str],
    *,
    size: int = 9,
    colour: str = PICK_COLOUR,
) -> dict[str, Any]:
    """Pick handles: markers carrying [layer, id] and a hover label each."""
    return {
        "type": "scattergl",
        "x": list(xs),
        "y": list(ys),
        "mode": "markers",
        "marker": {"size": size, "color": colour, "line": {"color": "#1f1f1f", "width": 1}},
        "name": name,
        "customdata": list(refs),
        "hovertext": list(texts),
        "hoverinfo": "text",
        "meta": {"pick": "handles"},
    }


def link_handles(lang: str, layer: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Handles at the middle of a network's links in view (``gis.planner.fetch_links_in_view``
    rows), for the map page, whose own network lines carry no ids."""
    id_column = get_layer(layer).id_column
    refs, texts = [], []
    for r in rows:
        props = {k: v for k, v in r.items() if k not in ("mid_lon", "mid_lat")}
        refs.append([layer, str(r[id_column])])
        texts.append(hover_text(lang, layer, props))
    xs, ys = [r["mid_lon"] for r in rows], [r["mid_lat"] for r in rows]
    colour = "rgba(255, 255, 255, 0.55)"
    return handle_trace(layer_label(lang, layer), xs, ys, refs, texts, size=7, colour=colour)


ISOLATION_SLOTS = 2 * len(IMPACT_STYLE)  # a line and a marker trace per role


def isolation_traces(
    lang: str, features: Sequence[dict[str, Any]], *, slots: bool = False
) -> list[dict[str, Any]]:
    """An isolation drawn over a map: the segment, the pipes without supply, the valves to
    close and the facilities cut off (the alert console's colours, ``figures.IMPACT_STYLE``).
    With ``slots``, always ``ISOLATION_SLOTS`` traces (empty ones out of the legend), so that
    the next plan replaces this one in place."""
    traces = []
    for role, (colour, size, key) in IMPACT_STYLE.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        px: list[float] = []
        py: list[float] = []
        names: list[str] = []
        for f in features:
            props = f.get("properties") or {}
            if not isinstance(props, dict) or props.get("role") != role:
                continue
            try:  # the map page gets these back from the browser: junk draws nothing
                line_x, line_y, point = _xy_of(f.get("geometry") or {})
            except (TypeError, KeyError, IndexError, ValueError, AttributeError):
                continue
            xs += line_x
            ys += line_y
            if point:
                px.append(point[0])
                py.append(point[1])
                names.append(plot_text(_feature_name(lang, f)))
        meta = {"isolation": role}
        if xs or slots:
            line = {"color": colour, "width": size}
            traces.append(
                {"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": line}
                | {"name": t(lang, key), "hoverinfo": "skip", "meta": meta}
                | {"showlegend": bool(xs)}
            )
        if px or slots:
            symbol = "x" if role == "valve_to_close" else "cross"
            marker = {"color": colour, "size": size, "symbol": symbol}
            traces.append(
                {"type": "scatter", "x": px, "y": py, "mode": "markers", "marker": marker}
                | {"name": t(lang, key), "text": names, "hoverinfo": "text", "meta": meta}
                | {"showlegend": bool(px)}
            )
    return traces


def _xy_of(geom: dict[str, Any]) -> tuple[list[float | None], list[float | None], Any]:
    """A line's x and y (parts ending in None) or a point, as finite numbers."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for part in _line_parts(geom):
        xs += [float(p[0]) for p in part] + [None]
        ys += [float(p[1]) for p in part] + [None]
    point = None
    if geom.get("type") == "Point":
        point = (float(geom["coordinates"][0]), float(geom["coordinates"][1]))
    if not all(math.isfinite(v) for v in [*xs, *ys, *(point or ())] if v is not None):
        raise ValueError("not a finite coordinate")
    return xs, ys, point


def _feature_name(lang: str, f: dict[str, Any]) -> str:
    """A facility by its name in the page's language, anything else by its id."""
    props = f.get("properties") or {}
    zh, en = props.get("name_zh"), props.get("name_en")
    return str((en if lang == "en" and en else zh) or f.get("id") or "")


# -- the picked feature's panel -----------------------------------------------------------------
def feature_panel(
    lang: str,
    prefix: str,
    layer: str,
    feature: dict[str, Any],
    alerts: Sequence[dict[str, Any]],
    *,
    tz: str,
    may_isolate: bool,
) -> list:
    """The picked feature: its attributes by label, its newest alerts, and for a link the
    "isolate" button (disabled, with the reason, for a role that may not read valve plans)."""
    title = t(lang, "pick.title", layer=layer_label(lang, layer), id=display_text(feature["id"]))
    rows = [
        html.Tr([html.Th(k), html.Td(display_text(v))])
        for k, v in attribute_rows(lang, feature.get("properties") or {})
    ]
    out: list = [
        html.H3(title, className="pick-title"),
        html.Table(html.Tbody(rows), className="data-table pick-attributes"),
        html.H3(t(lang, "pick.alerts", n=len(alerts))),
        _alert_list(lang, alerts, tz),
    ]
    if layer in LINK_NETWORKS:
        button = html.Button(
            t(lang, "pick.isolate"),
            id=f"{prefix}-isolate",
            className="action",
            disabled=not may_isolate,
        )
        why = "" if may_isolate else html.Div(t(lang, "pick.isolate_role"), className="note")
        out += [html.Div([button, why], className="pick-actions")]
    return out


def _alert_list(lang: str, alerts: Sequence[dict[str, Any]], tz: str) -> html.Ul | html.Div:
    if not alerts:
        return html.Div(t(lang, "pick.no_alerts"), className="note pick-no-alerts")
    items = []
    for a in alerts:
        raised: datetime = a["raised_at"]
        message = a["message_en"] if lang == "en" else a["message_zh"]
        items.append(
            html.Li(
                [
                    severity_badge(lang, a["severity"]),
                    f" {local_time(raised, tz, '%Y-%m-%d %H:%M')} · ",
                    catalogue_label(lang, "astate.", a["state"]),
                    f" · {display_text(message)}",
                ]
            )
        )
    return html.Ul(items, className="timeline pick-alerts")


def isolation_view(
    lang: str,
    link: str,
    summary: dict[str, Any],
    names: list[str],
    form: html.Div | None = None,
) -> list:
    """The valves to close and what loses supply, as a list under the picked feature (and the
    form that records it as a planned shutdown, for those who may)."""
    valves = [*summary.get("sources_to_shut", []), *summary.get("valves_to_close", [])]
    items = [
        t(lang, "alerts.valves", n=len(valves), ids=", ".join(map(display_text, valves)) or "—")
        if valves
        else t(lang, "pick.no_valves"),
        t(
            lang,
            "alerts.affected",
            customers=summary.get("customers_without_supply", 0),
            population=summary.get("population_without_supply", 0),
        ),
        t(lang, "pick.cut_pipes", n=len(summary.get("links_without_supply", []))),
        t(lang, "alerts.facilities", names="、".join(map(display_text, names)) or "—"),
    ]
    return [
        html.H3(t(lang, "pick.isolation", id=display_text(link))),
        html.Ul([html.Li(i) for i in items], className="timeline impact pick-isolation"),
        *([form] if form is not None else []),
    ]


def shutdown_form(lang: str, prefix: str) -> html.Div:
    """When and how long: the valve plan recorded as a planned shutdown (``record_shutdown``)."""
    return html.Div(
        [
            html.H4(t(lang, "shutdown.title")),
            html.Label(t(lang, "shutdown.start"), htmlFor=f"{prefix}-shutdown-start"),
            dcc.Input(id=f"{prefix}-shutdown-start", type="text", value="", debounce=False),
            html.Label(t(lang, "shutdown.hours"), htmlFor=f"{prefix}-shutdown-hours"),
            dcc.Input(id=f"{prefix}-shutdown-hours", type="text", value="4", debounce=False),
            html.Button(
                t(lang, "shutdown.record"),
                id=f"{prefix}-shutdown-record",
                className="action",
                n_clicks=0,
            ),
            html.Div(id=f"{prefix}-shutdown-note", role="status"),
        ],
        className="shutdown-form",
    )


MAX_SHUTDOWN_HOURS = 720.0


def shutdown_window(start: Any, hours: Any, tz: str, now: datetime) -> tuple[datetime, float]:
    """(start, hours) from the form: an ISO time in ``tz`` (empty: ``now``) and 0.5-720 h;
    ``ValueError`` otherwise."""
    text = start.strip() if isinstance(start, str) else ""
    begins = datetime.fromisoformat(text) if text else now
    if begins.tzinfo is None:
        begins = begins.replace(tzinfo=ZoneInfo(tz))
    length = float(str(hours).strip()) if hours is not None else math.nan
    if not 0.5 <= length <= MAX_SHUTDOWN_HOURS:  # nan and inf fail here too
        raise ValueError(f"hours out of range: {display_text(str(hours))[:20]}")
    return begins.astimezone(UTC), length


def record_shutdown(ctx: AppContext, lang: str, picked: Any, start: Any, hours: Any) -> Any:
    """The picked link's valve plan recorded in the works calendar as a planned shutdown: who
    loses supply and for how long, and its sensors' alarms grouped as planned works. Emergency
    and admin (``alert.act``, and the valve plan's layers), checked here; the entry and its
    audit row in one transaction."""
    if not isinstance(picked, dict) or picked.get("layer") not in LINK_NETWORKS:
        return html.Div(t(lang, "pick.not_link"), className="msg-error")
    layer, fid = picked["layer"], str(picked.get("id"))[:64]
    user = ctx.current_user()
    if user is None:
        return html.Div(t(lang, "pick.need_login"), className="msg-error")
    if not can(user, "alert.act"):
        return html.Div(t(lang, "shutdown.role"), className="msg-error")
    try:
        begins, length = shutdown_window(start, hours, ctx.tz, ctx.clock())
    except ValueError:
        return html.Div(t(lang, "shutdown.bad_time"), className="msg-error")
    from access.accounts import write_audit
    from alerts.api import add_work
    from gis.analysis import NetworkCache, fetch_isolation, fetch_shutdown

    network = LINK_NETWORKS[layer]
    cache = ctx.cache.get("network-cache", 3600, NetworkCache)
    try:
        with ctx.writer.connection() as conn, conn.transaction():
            if not readable(conn, user, isolation_layers(layer)):
                return html.Div(t(lang, "pick.isolate_role"), className="msg-error")
            iso = fetch_isolation(conn, network, fid, cache=cache, with_geometry=False)
            plan = iso["isolation"]
            if plan["sources_to_shut"] or not plan["valves_to_close"]:
                return html.Div(t(lang, "shutdown.source"), className="msg-error")
            valves = plan["valves_to_close"]
            sd = fetch_shutdown(
                conn, network, valves, hours=length, cache=cache, with_geometry=False
            )["shutdown"]
            sensors = [x["sensor_id"] for x in sd["sensors_without_supply"]]
            work_id = add_work(
                conn,
                kind="valve_operation",
                utility=network,
                starts_at=begins,
                ends_at=begins + timedelta(hours=length),
                description=f"planned shutdown of {fid}: close {', '.join(valves)}",
                recorded_by=user.username,
                asset_ids=sd["devices"],
                sensor_ids=sensors,
            )
            detail = {"work": work_id, "link": fid, "devices": valves, "hours": length}
            write_audit(conn, ctx.clock(), user.username, "shutdown_recorded", "", detail)
    except queries.DatabaseUnavailable:
        return html.Div(t(lang, "banner.db_down"), className="msg-error")
    except ValueError:  # gis.network.NetworkError: the link is gone from the graph
        return html.Div(t(lang, "pick.not_found"), className="note")
    text = t(
        lang,
        "shutdown.done",
        id=work_id,
        start=local_time(begins, ctx.tz, "%Y-%m-%d %H:%M"),
        hours=length,
        customers=sd["customers_without_supply"],
        population=sd["population_without_supply"],
        sensors=len(sensors),
    )
    return html.Span(text, className="msg-ok")


def facility_names(lang: str, features: Sequence[dict[str, Any]]) -> list[str]:
    """The facilities an isolation cuts off, by name in the page's language."""
    return sorted(
        _feature_name(lang, f)
        for f in features
        if (f.get("properties") or {}).get("role") == "facility_without_supply"
    )


# -- the reads a pick needs (through the AppContext: the signed-in user, the reader) -----------
def readable(conn, user: Any, layers: list[str]) -> bool:
    """Whether ``user`` may read every one of ``layers`` (their data classes, access.classes)."""
    classes = fetch_layer_classes(conn)
    return user is not None and all(
        may_read(user.role, (), n, classes.get(n, "restricted")) for n in layers
    )


def picked_panel(ctx: AppContext, lang: str, prefix: str, layer: str, fid: str):
    """(the panel of a picked feature, what the isolate button will act on), for a user who
    may read its layer; a login prompt or the reason otherwise."""
    user = ctx.current_user()
    if user is None:
        return html.Div(t(lang, "pick.need_login"), className="msg-error"), None
    try:
        with ctx.reader.connection() as conn:
            if not readable(conn, user, [layer]):
                return html.Div(t(lang, "planner.restricted"), className="msg-error"), None
            feature = fetch_feature(conn, layer, fid)
            names = district_names(lang, read_districts(ctx, conn))
            alerts = fetch_asset_alerts(conn, feature_assets(layer, feature)) if feature else []
            may_isolate = layer in LINK_NETWORKS and readable(conn, user, isolation_layers(layer))
    except queries.DatabaseUnavailable:
        return html.Div(t(lang, "banner.db_down"), className="msg-error"), None
    if feature is None:
        return html.Div(t(lang, "pick.not_found"), className="note"), None
    shown = with_district_names([feature], names)[0]
    body = feature_panel(lang, prefix, layer, shown, alerts, tz=ctx.tz, may_isolate=may_isolate)
    return body, {"layer": layer, "id": fid}


def isolation_layers(layer: str) -> list[str]:
    """What a valve plan for a link of ``layer`` reads: its network and the facilities (so it
    is restricted data, as on the API's /isolation)."""
    return [*NETWORKS[LINK_NETWORKS[layer]], "facilities"]


def register_shutdown(app: Dash, ctx: AppContext, prefix: str, picked_store: str) -> None:
    """The "record the shutdown" button under a valve plan on a page (``record_shutdown``)."""

    def record(clicks, picked, start, hours, lang):
        if not clicks:
            return no_update
        return record_shutdown(ctx, ctx.lang(lang), picked, start, hours)

    app.callback(
        Output(f"{prefix}-shutdown-note", "children"),
        Input(f"{prefix}-shutdown-record", "n_clicks"),
        State(picked_store, "data"),
        State(f"{prefix}-shutdown-start", "value"),
        State(f"{prefix}-shutdown-hours", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(record)


def isolation_answer(
    ctx: AppContext, lang: str, picked: Any, prefix: str
) -> tuple[list, list[dict]]:
    """(the isolation's list, its features to draw) for a picked link, checked again here:
    a user who may read valve plans (restricted), a link of a known network."""
    if not isinstance(picked, dict) or picked.get("layer") not in LINK_NETWORKS:
        return [html.Div(t(lang, "pick.not_link"), className="note")], []
    layer, fid = picked["layer"], str(picked.get("id"))[:64]
    user = ctx.current_user()
    if user is None:
        return [html.Div(t(lang, "pick.need_login"), className="msg-error")], []
    from gis.analysis import NetworkCache, fetch_isolation  # the network graph code, when needed

    cache = ctx.cache.get("network-cache", 3600, NetworkCache)
    try:
        with ctx.reader.connection() as conn:
            if not readable(conn, user, isolation_layers(layer)):
                return [html.Div(t(lang, "pick.isolate_role"), className="msg-error")], []
            doc = fetch_isolation(conn, LINK_NETWORKS[layer], fid, cache=cache)
    except queries.DatabaseUnavailable:
        return [html.Div(t(lang, "banner.db_down"), className="msg-error")], []
    except ValueError:  # gis.network.NetworkError: the link is not in the network graph
        return [html.Div(t(lang, "pick.not_found"), className="note")], []
    features = doc["features"]
    names = facility_names(lang, features)
    form = shutdown_form(lang, prefix) if can(user, "alert.act") else None
    return isolation_view(lang, fid, doc["isolation"], names, form), features
