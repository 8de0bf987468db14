"""`cityops gis ...`: the basic geographic database from the command line (wiring only).

Mount in cityops/shell/cli.py next to the existing `gis load-districts`::

    from gis.cli import register as register_gis
    register_gis(gis_app)

(or, as a group of its own, ``app.add_typer(gis.cli.app, name="gis")``). Every command reads
CITYOPS_DATABASE_URL through ``cityops.kernel.settings.Settings``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="The basic geographic database (PostGIS layers).", no_args_is_help=True)
console = Console(stderr=True)


def _db_url() -> str:
    from cityops.kernel.settings import Settings

    return Settings().database_url  # type: ignore[call-arg]  # from the environment


def _connect():
    from cityops.kernel.db import connect

    return connect(_db_url())


def _emit(fc: dict[str, Any], output: Path | None, name: str) -> None:
    from gis.export import to_csv, to_geojson, write_gpkg

    if output is None:
        sys.stdout.write(to_geojson(fc) + "\n")
        return
    suffix = output.suffix.lower()
    if suffix == ".gpkg":
        write_gpkg(fc, output, layer=name)
    elif suffix == ".csv":
        output.write_text(to_csv(fc), encoding="utf-8-sig")
    else:
        output.write_text(to_geojson(fc), encoding="utf-8")
    console.print(f"wrote {len(fc.get('features', []))} features to {output}")


_Output = Annotated[Path | None, typer.Option(help="Write .geojson, .csv or .gpkg.")]
_Network = Annotated[str, typer.Argument(help="water, gas or power.")]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc.args[0] if exc.args else exc}")
    raise typer.Exit(2)


@app.command("load")
def load(
    file: Annotated[Path, typer.Argument(help="GeoPackage, GeoJSON or Shapefile.")],
    layer: Annotated[str, typer.Option(help="Target layer, e.g. water_pipes, facilities.")],
    sublayer: Annotated[str | None, typer.Option(help="Layer inside a GeoPackage.")] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of a file that declares none, e.g. EPSG:4544.")
    ] = None,
    repair: Annotated[bool, typer.Option(help="Repair invalid geometries (else refuse).")] = True,
    source: Annotated[str | None, typer.Option(help="Where the data comes from.")] = None,
    licence: Annotated[str | None, typer.Option(help="Licence of the data.")] = None,
    demo: Annotated[bool, typer.Option(help="Mark the layer as demo data.")] = False,
    classification: Annotated[
        str | None,
        typer.Option(help="Data class: public, internal or restricted (default: kept)."),
    ] = None,
) -> None:
    """Replace a layer with a file (CRS checked and transformed, geometry repaired or refused;
    one transaction: a failed load leaves the old layer as it was)."""
    from gis.loading import LayerLoadError, load_layer_file

    with _connect() as conn:
        try:
            rep = load_layer_file(
                conn,
                file,
                layer,
                sublayer=sublayer,
                assume_crs=crs,
                repair=repair,
                source=source,
                licence=licence,
                demo=demo,
                classification=classification,
            )
        except LayerLoadError as exc:
            _fail(exc)
    console.print(
        f"loaded {rep.features} features into {layer} from {rep.source_crs}"
        + (
            f"; repaired {len(rep.repaired)}: {', '.join(rep.repaired[:10])}"
            if rep.repaired
            else ""
        )
    )


@app.command("classify")
def classify_cmd(
    layer: Annotated[str, typer.Argument(help="A layer, e.g. facilities.")],
    classification: Annotated[str, typer.Argument(help="public, internal or restricted.")],
) -> None:
    """Set a layer's data class (who may read it over HTTP: docs/gis.md, Access)."""
    from gis.postgis import write_layer_classification

    if classification not in ("public", "internal", "restricted"):
        _fail(ValueError("classification is public, internal or restricted"))
    with _connect() as conn:
        ok = write_layer_classification(conn, layer, classification)
        conn.commit()
    if not ok:
        _fail(KeyError(f"no layer {layer!r}"))
    console.print(f"{layer} is now {classification}")


@app.command("import-epanet")
def import_epanet_cmd(
    file: Annotated[Path, typer.Argument(help="EPANET .inp model.")],
    crs: Annotated[str, typer.Option(help="CRS of the model's coordinates.")] = "EPSG:4544",
    origin: Annotated[
        str | None,
        typer.Option(help="LON,LAT to centre an abstract model on (scaled to pipe lengths)."),
    ] = None,
    scale_m: Annotated[
        float | None, typer.Option(help="Metres per model unit with --origin.")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Mark the water layers as demo data.")] = False,
) -> None:
    """Replace the water layers (nodes, pipes) with an EPANET model."""
    from gis.epanet import import_epanet_report
    from gis.filters import QueryError, parse_point
    from gis.loading import LayerLoadError

    try:
        o = parse_point(origin) if origin else None
        with _connect() as conn:
            counts, retired = import_epanet_report(
                conn, file, crs=crs, origin=o, scale_m=scale_m, demo=demo
            )
    except (LayerLoadError, QueryError, ValueError) as exc:
        _fail(exc)
    console.print(f"imported {counts['water_nodes']} nodes and {counts['water_pipes']} links")
    if retired:
        console.print(
            f"retired {len(retired)} demo water sensors of the replaced demo layers: "
            + ", ".join(retired[:10])
            + (" ..." if len(retired) > 10 else "")
        )
        if _alerts_api is not None:  # their open alerts end with them (alerts' own path)
            with _connect() as conn:
                cleared = _alerts_api.clear_alerts_of_retired(conn, retired)
            if cleared:
                console.print(f"cleared {cleared} open alerts of the retired sensors")


@app.command("export-epanet")
def export_epanet_cmd(
    file: Annotated[Path, typer.Argument(help="EPANET .inp file to write.")],
) -> None:
    """Write the water layers as an EPANET model (for the simulators or a hydraulic engineer).
    Pump curves and valve settings are not kept in the layers: such links become open pipes."""
    import wntr

    from gis.epanet import fetch_water_model

    with _connect() as conn:
        wn = fetch_water_model(conn)
    wntr.network.write_inpfile(wn, str(file), units="LPS")
    console.print(f"wrote {wn.num_nodes} nodes and {wn.num_links} links to {file}")


@app.command("demo")
def demo_cmd(
    grid_n: Annotated[int, typer.Option(help="Water junctions per side (60: >10,000 pipes).")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same city).")] = 4,
    resolutions: Annotated[str, typer.Option(help="H3 resolutions of the grid cells.")] = "7,8",
    sensors: Annotated[
        int, typer.Option(help="Demo sensors per sensor type on demo assets (0: none).")
    ] = 0,
) -> None:
    """Load the demo networks, facilities and H3 grid cells (marked demo) for central Chengdu.
    Districts must be loaded first (`cityops gis load-districts`)."""
    from gis.demo import DemoConfig, build_demo_city
    from gis.grid import build_grid_cells
    from gis.postgis import fetch_districts_frame, write_grid_cells, write_layers

    with _connect() as conn:
        districts = fetch_districts_frame(conn)
        if len(districts) == 0:
            _fail(RuntimeError("no districts: run `cityops gis load-districts` first"))
        res = tuple(int(r) for r in resolutions.split(",") if r)
        n_cells = write_grid_cells(conn, build_grid_cells(districts, res))
        frames = build_demo_city(DemoConfig(grid_n=grid_n, seed=seed))
        counts = write_layers(conn, frames, demo=True)
        if sensors:
            from gis.demo import build_demo_sensors
            from gis.postgis import write_sensors

            counts["sensors"] = write_sensors(
                conn, build_demo_sensors(frames, per_kind=sensors, seed=seed)
            )
    console.print(f"grid cells: {n_cells}; " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command("layers")
def layers_cmd() -> None:
    """The layers with their data class, source, licence, CRS, demo flag and feature count."""
    from rich.table import Table

    from gis.postgis import fetch_layer_metadata

    with _connect() as conn:
        rows = fetch_layer_metadata(conn)
    t = Table("layer", "title", "class", "features", "demo", "crs", "source", "licence")
    for m in rows:
        t.add_row(
            m["name"],
            m["title_zh"],
            m["classification"],
            str(m["feature_count"] or 0),
            "demo" if m["demo"] else "",
            m["crs"],
            m["source"],
            m["licence"],
        )
    Console().print(t)


@app.command("dictionary")
def dictionary_cmd(
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """The data dictionary: every layer's fields (names in Chinese and English, unit, type,
    allowed values, range), data class and source, every quantity and sensor type."""
    from gis.dictionary import dictionary_csv
    from gis.dictionary_db import fetch_dictionary

    if fmt not in ("json", "csv"):
        _fail(ValueError(f"--format is json or csv, not {fmt!r}"))
    with _connect() as conn:
        doc = fetch_dictionary(conn)
    text = dictionary_csv(doc) if fmt == "csv" else json.dumps(doc, ensure_ascii=False, indent=1)
    if output is None:
        sys.stdout.write(text + "\n")
        return
    output.write_text(text, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
    console.print(f"wrote the data dictionary to {output}")


@app.command("query")
def query_cmd(
    layer: Annotated[str, typer.Argument(help="Layer to answer from.")],
    where: Annotated[
        list[str] | None, typer.Option(help="Attribute filter, e.g. install_year<1990.")
    ] = None,
    district: Annotated[
        str | None, typer.Option(help="Within this district: a name (锦江区, Jinjiang) or adcode.")
    ] = None,
    polygon: Annotated[Path | None, typer.Option(help="Within this GeoJSON geometry file.")] = None,
    point: Annotated[str | None, typer.Option(help="LON,LAT reference point.")] = None,
    feature: Annotated[str | None, typer.Option(help="layer:id reference feature.")] = None,
    radius_m: Annotated[
        float | None, typer.Option(help="Within this distance [m, EPSG:4544].")
    ] = None,
    nearest: Annotated[int | None, typer.Option(help="The N nearest to the point/feature.")] = None,
    near: Annotated[
        list[str] | None,
        typer.Option(help="layer:radius_m[:filters], e.g. facilities:500:kind=school."),
    ] = None,
    alerts: Annotated[
        str | None, typer.Option(help="kind:quantity:days:more_than[:radius_m].")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many features.")] = 1000,
    output: Annotated[
        Path | None, typer.Option(help="Write .geojson, .csv or .gpkg (default: stdout).")
    ] = None,
) -> None:
    """Planners' questions, e.g. mains laid before 1990 within 500 m of a school with more than 3
    low-pressure alerts in the last year:

    cityops gis query water_pipes --where "install_year<1990" --near "facilities:500:kind=school"
    --alerts threshold_low:pressure:365:3
    """
    from gis.filters import QueryError, build_query
    from gis.planner import fetch_planner_query

    try:
        q = build_query(
            layer,
            where=where or [],
            district=district,
            polygon=json.loads(polygon.read_text(encoding="utf-8")) if polygon else None,
            point=point,
            feature=feature,
            radius_m=radius_m,
            nearest=nearest,
            near=near or [],
            alerts=alerts,
            limit=limit,
        )
        with _connect() as conn:
            fc = fetch_planner_query(conn, q)
    except (QueryError, KeyError) as exc:
        _fail(exc)
    _emit(fc, output, layer)


@app.command("isolate")
def isolate_cmd(
    network: _Network,
    link_id: Annotated[str, typer.Argument(help="The pipe or line to isolate.")],
    unavailable: Annotated[
        str, typer.Option(help="Valves that cannot be operated (a,b,...).")
    ] = "",
    leak_lps: Annotated[
        float | None,
        typer.Option(help="The leak's flow [L/s]: a small leak gets proportionate advice."),
    ] = None,
    severity: Annotated[
        str | None, typer.Option(help="The incident's severity (critical keeps full isolation).")
    ] = None,
    lang: Annotated[str, typer.Option(help="Language of the advice (zh or en).")] = "zh",
    output: _Output = None,
) -> None:
    """Valves to close to isolate a pipe, and the pipes, customers, facilities and population
    that lose supply; with the advice proportionate to the event."""
    from gis.analysis import fetch_isolation
    from gis.network import NetworkError

    try:
        with _connect() as conn:
            fc = fetch_isolation(
                conn,
                network,
                link_id,
                unavailable=tuple(v for v in unavailable.split(",") if v),
                leak_lps=leak_lps,
                severity=severity,
            )
    except NetworkError as exc:
        _fail(exc)
    iso = fc["isolation"]
    advice = iso.get("advice")
    if advice:
        console.print(advice["reason_en" if lang == "en" else "reason_zh"])
    console.print(
        f"close {len(iso['valves_to_close'])} valves: {', '.join(iso['valves_to_close'])}; "
        f"{len(iso['links_without_supply'])} links, {iso['customers_without_supply']} customers, "
        f"about {iso['population_without_supply']} people and "
        f"{len(iso['facilities_without_supply'])} facilities lose supply"
    )
    _emit(fc, output, f"isolation_{link_id}")


@app.command("renewal")
def renewal_cmd(
    network: Annotated[str, typer.Argument(help="water or gas.")] = "water",
    top: Annotated[int, typer.Option(min=1, max=100_000, help="How many pipes to list.")] = 20,
    weights: Annotated[
        str,
        typer.Option(
            help="Weights of the parts over the defaults, e.g. age=0.4,history=0.3 "
            "(parts: age, material, diameter, pressure, history, criticality)."
        ),
    ] = "",
    window_years: Annotated[
        int, typer.Option(min=1, max=50, help="Years of incident history counted.")
    ] = 10,
    output: _Output = None,
) -> None:
    """The pipes to renew first: a score from age, material, diameter, pressure class,
    incidents placed on the pipe and what its failure cuts off (people and critical facilities,
    from the valve isolation of its segment), each part shown; the table here, a map layer with
    --output (.geojson, .gpkg, .csv)."""
    from gis.renewal import PARTS, RenewalError, Weights
    from gis.renewal_db import fetch_renewal

    try:
        chosen = Weights.parse(weights)
        with _connect() as conn:
            fc = fetch_renewal(conn, network, chosen, top=top, window_years=window_years)
    except RenewalError as exc:
        _fail(exc)
    meta = fc["renewal"]
    shown = ", ".join(f"{p} {meta['weights'][p]:.2f}" for p in PARTS)
    console.print(
        f"{meta['pipes_scored']} {network} pipes scored in {meta['year']} (incidents over"
        f" {meta['window_years']} years); weights: {shown}",
        soft_wrap=True,
    )
    head = ["rank", "pipe", "score", *PARTS, "unknown"]
    typer.echo("\t".join(head))
    for f in fc["features"]:
        p = f["properties"]
        cells = [str(p["rank"]), str(p["pipe_id"]), f"{p['score']:.1f}"]
        cells += [f"{p['part_' + part]:.2f}" for part in PARTS]
        typer.echo("\t".join([*cells, p["unknown_parts"] or "-"]))
    if output is not None:
        _emit(fc, output, f"renewal_{network}")


@app.command("trace")
def trace_cmd(
    network: _Network,
    start: Annotated[str, typer.Argument(help="Node or link id.")],
    direction: Annotated[str, typer.Option(help="downstream or upstream.")] = "downstream",
    output: _Output = None,
) -> None:
    """Everything upstream (towards the sources) or downstream of a node or link."""
    from gis.analysis import fetch_trace
    from gis.network import NetworkError

    try:
        with _connect() as conn:
            fc = fetch_trace(conn, network, start, direction)
    except NetworkError as exc:
        _fail(exc)
    tr = fc["trace"]
    console.print(
        f"{direction}: {tr['nodes']} nodes, {tr['links']} links, {tr['customers']} customers"
    )
    _emit(fc, output, f"trace_{direction}")


@app.command("leak")
def leak_cmd(
    radius_m: Annotated[float, typer.Option(help="Buffer radius [m].")] = 200.0,
    point: Annotated[str | None, typer.Option(help="LON,LAT of the leak.")] = None,
    pipe: Annotated[str | None, typer.Option(help="Gas pipe id of the leak.")] = None,
    output: _Output = None,
) -> None:
    """A gas leak's affected area with the facilities and population inside."""
    from gis.analysis import fetch_leak_area
    from gis.filters import QueryError, parse_point
    from gis.network import NetworkError

    try:
        with _connect() as conn:
            fc = fetch_leak_area(
                conn, radius_m=radius_m, point=parse_point(point) if point else None, pipe_id=pipe
            )
    except (NetworkError, QueryError) as exc:
        _fail(exc)
    lk = fc["leak"]
    console.print(
        f"area {lk['area_m2']:.0f} m², about {lk['population']} people (demo estimate), "
        f"facilities: {', '.join(lk['facilities']) or 'none'}"
    )
    _emit(fc, output, "leak_area")


@app.command("ogc-config")
def ogc_config_cmd(
    output: Annotated[Path, typer.Option(help="Where to write pygeoapi's YAML.")] = Path(
        "pygeoapi.yml"
    ),
    base_url: Annotated[
        str, typer.Option(help="URL the service is reached at.")
    ] = "http://127.0.0.1:5000",
) -> None:
    """Write a pygeoapi configuration for this database (for `pygeoapi serve` or a WSGI host)."""
    from gis.ogc import fetch_pygeoapi_config, write_pygeoapi_config

    with _connect() as conn:
        write_pygeoapi_config(fetch_pygeoapi_config(conn, _db_url(), base_url=base_url), output)
    console.print(f"wrote {output}")


def _serve(app_: Any, host: str, port: int) -> None:
    """Serve a WSGI app on the production server the dashboard uses too (decision 0043),
    until Ctrl-C or SIGTERM."""
    from cityops.kernel.web import make_server, serve_until_stopped

    console.print(f"serving on http://{host}:{port}/ (Ctrl-C stops)")
    serve_until_stopped(make_server(app_, host, port))


_Host = Annotated[str, typer.Option(help="Listen address.")]
_Port = Annotated[int, typer.Option(help="Port.")]
_PublicUrl = Annotated[str | None, typer.Option(help="Public URL (default http://host:port).")]


@app.command("serve-ogc")
def serve_ogc_cmd(
    host: _Host = "127.0.0.1", port: _Port = 5000, base_url: _PublicUrl = None
) -> None:
    """Serve OGC API - Features (pygeoapi) over the layers, for QGIS and OWSLib."""
    from gis.ogc import create_ogc_app, fetch_pygeoapi_config

    url = base_url or f"http://{host}:{port}"
    with _connect() as conn:
        cfg = fetch_pygeoapi_config(conn, _db_url(), base_url=url, host=host, port=port)
    _serve(create_ogc_app(cfg), host, port)


@app.command("serve")
def serve_cmd(host: _Host = "127.0.0.1", port: _Port = 5001, base_url: _PublicUrl = None) -> None:
    """Serve the planners' HTTP API at /api and OGC API - Features at /ogc."""
    from cityops.kernel.settings import Settings
    from gis.http import create_gis_app

    keys = Settings().keys_dir or None  # type: ignore[call-arg]  # exports signed where keys are
    app_ = create_gis_app(_db_url(), base_url=base_url or f"http://{host}:{port}", keys_dir=keys)
    _serve(app_, host, port)


# -- metered areas (DMAs): issue 15 item 2, decision 0055 ----------------------------------------
# The areas are the alerts part's tables, which gis may not import (pyproject's contracts): the
# shell hands its store in (``register(gis_app, alerts_api=alerts.api)``); a retired sensor's
# open alerts are cleared through it too.
areas_app = typer.Typer(
    help="Metered areas (DMAs) for the water balance: import, derive, list, show.",
    no_args_is_help=True,
)
app.add_typer(areas_app, name="areas")
_alerts_api: Any = None


def _areas() -> Any:
    if _alerts_api is None:
        _fail(RuntimeError("metered areas are not wired: register(gis_app, alerts_api=alerts.api)"))
    return _alerts_api


def _acting_user(by: str | None) -> str:
    import getpass

    return by or f"cli:{getpass.getuser()}"


def _area_file_features(
    file: Path, layer: str | None, meters_layer: str | None, crs: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(polygon features, meter point features) in EPSG:4326 from a GeoPackage or GeoJSON; the
    points come from ``meters_layer`` (in a GeoPackage, a layer named ``meters`` unless told)
    or, in a one-layer file, from its Point features."""
    from gis.areas import AreaError
    from gis.loading import read_layer_file

    def features(sub: str | None) -> list[dict[str, Any]]:
        gdf = read_layer_file(file, sublayer=sub)
        if gdf.crs is None:
            if crs is None:
                raise AreaError(f"{file}: no CRS; give one with --crs")
            gdf = gdf.set_crs(crs)
        # a GeoJSON list property (inlets: [...]) comes back as an array
        text = gdf.to_crs(4326).to_json(
            default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)
        )
        return list(json.loads(text)["features"])

    if meters_layer is None and layer is None and file.suffix.lower() == ".gpkg":
        import pyogrio

        names = [str(n) for n, _ in pyogrio.list_layers(file)]
        if "meters" in names:  # the usual two-layer GeoPackage: areas (first) and meters
            layer = next(n for n in names if n != "meters")
            meters_layer = "meters"
    found = features(layer)
    points = features(meters_layer) if meters_layer else []
    polygons = []
    for f in found:
        kind = (f.get("geometry") or {}).get("type")
        if kind == "Point" and not meters_layer:
            points.append(f)
        else:
            polygons.append(f)
    return polygons, points


_DryRun = Annotated[bool, typer.Option(help="Print what would be written; write nothing.")]
_By = Annotated[str | None, typer.Option(help="Who sets the areas (default cli:<login>).")]


def _print_drafts(drafts: list[Any]) -> None:
    for d in drafts:
        meters = ", ".join(
            f"{m.sensor_id}({'+' if m.sign > 0 else '-'}{', tank' if m.storage else ''})"
            for m in d.meters
        )
        sys.stdout.write(
            f"{d.area_id}\t{d.name}\tmeters: {meters}\tsensors: {len(d.members)}"
            + (f"\tlinks: {len(d.pipes)}" if d.pipes else "")
            + "\n"
        )


@areas_app.command("import")
def areas_import_cmd(
    file: Annotated[Path, typer.Argument(help="GeoPackage or GeoJSON: one polygon per area.")],
    layer: Annotated[str | None, typer.Option(help="The areas' layer in a GeoPackage.")] = None,
    meters_layer: Annotated[
        str | None, typer.Option(help="A layer of meter points (area_id, sensor_id, direction).")
    ] = None,
    crs: Annotated[str | None, typer.Option(help="CRS of a file that declares none.")] = None,
    by: _By = None,
    dry_run: _DryRun = False,
) -> None:
    """Replace the imported metered areas with a file's (one transaction: an unknown sensor, a
    meter that is not a flow meter, a bad or repeated id stores nothing)."""
    from gis.areas import AreaError, parse_area_features
    from gis.loading import LayerLoadError

    store = _areas()
    try:
        polygons, points = _area_file_features(file, layer, meters_layer, crs)
        drafts = parse_area_features(polygons, points)
    except (AreaError, LayerLoadError) as exc:
        _fail(exc)
    if dry_run:
        _print_drafts(drafts)
        return
    try:
        with _connect() as conn:
            n = store.write_metered_areas(
                conn, _acting_user(by), [d.as_record() for d in drafts], origin="import"
            )
    except ValueError as exc:
        _fail(exc)
    console.print(
        f"imported {n['written']} metered areas; {n['removed']} earlier imported areas removed"
    )


@areas_app.command("derive")
def areas_derive_cmd(
    prefix: Annotated[str, typer.Option(help="Area ids: <prefix>-01, <prefix>-02, ...")] = "dma",
    name: Annotated[
        str, typer.Option(help="Area names; {n} is the number (largest area first).")
    ] = "计量分区 {n}",
    min_links: Annotated[int, typer.Option(help="Leave out parts with fewer links.")] = 1,
    buffer_m: Annotated[float, typer.Option(help="Polygon: this far round the pipes [m].")] = 40.0,
    by: _By = None,
    dry_run: _DryRun = False,
) -> None:
    """Derive metered areas from the water network: cut it at flow meters (sensors whose
    asset_id is a pipe) and closed valves; each part with a meter on its boundary is an area
    (replaces the earlier derived areas)."""
    from gis.areas import AreaError, derive_areas, with_boundaries
    from gis.areas_db import fetch_area_inputs, fetch_pipe_lines_m, metric_to_lonlat

    store: Any = None if dry_run else _areas()
    try:
        with _connect() as conn:
            net, meters, others = fetch_area_inputs(conn)
            if not meters:
                raise AreaError("no flow meters on water pipes (sensors.asset_id = a pipe_id)")
            drafts, skipped = derive_areas(
                net,
                meters,
                members_at=others,
                prefix=prefix,
                name_format=name,
                min_links=min_links,
            )
            lines = fetch_pipe_lines_m(conn, sorted({p for d in drafts for p in d.pipes}))
            drafts = with_boundaries(drafts, lines, to_lonlat=metric_to_lonlat(), buffer_m=buffer_m)
            for s in skipped:
                console.print(f"not an area: {s.nodes} nodes, {s.reason}")
            if dry_run:
                _print_drafts(drafts)
                return
            if not drafts:
                raise AreaError("no part of the network is closed by meters: no area derived")
            n = store.write_metered_areas(
                conn, _acting_user(by), [d.as_record() for d in drafts], origin="derived"
            )
    except (ValueError, KeyError) as exc:
        _fail(exc)
    console.print(
        f"derived {n['written']} metered areas; {n['removed']} earlier derived areas removed"
    )


@areas_app.command("list")
def areas_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The metered areas: meters with their signs, sensors, size, and balance alerts."""
    from rich.table import Table

    store = _areas()
    with _connect() as conn:
        rows = store.read_metered_area_list(conn)
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    t = Table("area", "name", "origin", "meters", "sensors", "km²", "balance")
    for r in rows:
        t.add_row(
            r["area_id"],
            r["name"],
            r["origin"],
            " ".join(("+" if m["sign"] > 0 else "-") + m["sensor_id"] for m in r["meters"]),
            str(r["sensors"]),
            "" if r["area_km2"] is None else f"{r['area_km2']:.3f}",
            ", ".join(r["alerting"]) or "ok",
        )
    Console(width=200).print(t)


@areas_app.command("show")
def areas_show_cmd(
    area_id: Annotated[str, typer.Argument(help="The area's id.")],
    output: _Output = None,
) -> None:
    """One metered area as GeoJSON (its polygon, meters, sensors and balance alerts)."""
    store = _areas()
    with _connect() as conn:
        area = store.read_metered_area(conn, area_id)
    if area is None:
        _fail(KeyError(f"no metered area {area_id!r}"))
    geometry = area.pop("boundary")
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "id": area_id, "geometry": geometry, "properties": area}],
    }
    if output is None:
        sys.stdout.write(json.dumps(fc, ensure_ascii=False, indent=2) + "\n")
        return
    # a file holds flat columns, as `areas import` reads them back (inlets, outlets, storage)
    meters = area.pop("meters")
    area |= {
        "inlets": ",".join(m["sensor_id"] for m in meters if m["sign"] > 0),
        "outlets": ",".join(m["sensor_id"] for m in meters if m["sign"] < 0),
        "storage": ",".join(m["sensor_id"] for m in meters if m["storage"]),
        "members": ",".join(area["members"]),
        "alerting": ",".join(area["alerting"]),
    }
    _emit(fc, output, f"area_{area_id}")


def register(parent: typer.Typer, *, alerts_api: Any = None) -> None:
    """Add these commands to an existing `gis` group (keeps its `load-districts`);
    ``alerts_api``: ``alerts.api``, which writes and reads the metered areas and clears a
    retired sensor's open alerts."""
    global _alerts_api
    if alerts_api is not None:
        _alerts_api = alerts_api
    for cmd in app.registered_commands:
        parent.registered_commands.append(cmd)
    for grp in app.registered_groups:
        parent.registered_groups.append(grp)
