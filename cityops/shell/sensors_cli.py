"""``cityops sensors import``: a utility's sensors as it writes them (docs/decisions/0056).

A file's coordinates may be in any CRS (``--crs``), in the abstract units of the EPANET model the
network came from (``--model``, ``--origin``, ``--scale-m``: the same placement as
``cityops gis import-epanet``), or absent: ``--at-asset`` places each sensor on the network asset
its ``asset_id`` (or ``node`` / ``link``) names, a node's position or a link's midpoint. Ids are
kept as written when valid, or mapped by ``sensors.ids`` with the original in
``sensors.external_id``. Asset ids are checked against the utility's network layers when those
hold features. Any error names the record and nothing is stored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(stderr=True)


@dataclass
class RawRecord:
    """One sensor as read from the file: its properties and its coordinates (None: absent)."""

    props: dict[str, Any]
    x: float | None
    y: float | None
    where: str  # "line 3", "feature 2": for error messages


class ImportError_(ValueError):
    pass


def _num(v: Any) -> float | None:
    if v in (None, ""):
        return None
    return float(v)


def read_raw_records(path: Path) -> list[RawRecord]:
    """Records of a GeoJSON, CSV (lon/lat or x/y columns, optional) or GeoPackage file; a
    GeoPackage is read in EPSG:4326 (it carries its CRS)."""
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("type") != "FeatureCollection":
            raise ImportError_(f"{path}: expected a GeoJSON FeatureCollection")
        out = []
        for i, feat in enumerate(doc.get("features") or []):
            geom = feat.get("geometry") or None
            x = y = None
            if geom is not None:
                if geom.get("type") != "Point":
                    raise ImportError_(f"feature {i}: geometry must be a Point")
                x, y = (float(v) for v in geom["coordinates"][:2])
            out.append(RawRecord(dict(feat.get("properties") or {}), x, y, f"feature {i}"))
        return out
    if suffix == ".csv":
        out = []
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        for line, row in enumerate(reader, start=2):
            try:
                x = _num(row.get("lon", row.get("x")))
                y = _num(row.get("lat", row.get("y")))
            except ValueError:
                raise ImportError_(f"line {line}: coordinates are not numbers") from None
            out.append(RawRecord(dict(row), x, y, f"line {line}"))
        return out
    if suffix in (".gpkg", ".shp"):
        import pyogrio

        gdf = pyogrio.read_dataframe(path)
        if gdf.crs is None:
            raise ImportError_(f"{path}: no CRS; set one before import")
        doc = json.loads(gdf.to_crs(4326).to_json())
        return [
            RawRecord(dict(f["properties"]), *f["geometry"]["coordinates"][:2], f"feature {i}")
            for i, f in enumerate(doc["features"])
        ]
    raise ImportError_(f"{path}: unsupported format {suffix} (use .geojson, .csv or .gpkg)")


def asset_of(props: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(asset id, where to look): ``node`` names a node, ``link`` a link, ``asset_id`` either
    (a node first: EPANET lets a node and a link share a name)."""
    for key, kinds in (("asset_id", ("node", "link")), ("node", ("node",)), ("link", ("link",))):
        v = props.get(key)
        if v not in (None, ""):
            return str(v).strip(), kinds
    return None, ()


Positions = dict[str, dict[str, dict[str, tuple[float, float]]]]  # utility -> kind -> id -> pos


def find_asset(
    positions: Positions, utility: str | None, asset: str, kinds: tuple[str, ...]
) -> tuple[float, float] | None:
    by_kind = positions.get(utility or "", {})
    for kind in kinds:
        if asset in by_kind.get(kind, {}):
            return by_kind[kind][asset]
    return None


def prepare_sensors(
    records: list[RawRecord],
    *,
    to_lonlat: Callable[[float, float], tuple[float, float]],
    positions: Positions,
    at_asset: bool,
    checked_utilities: set[str],
) -> tuple[list, dict[str, str]]:
    """Validated sensors and {sensor_id: the utility's id} for ids that were mapped (pure).

    ``positions`` holds the network assets the file names; with ``at_asset`` every sensor is
    placed at its asset, otherwise ``to_lonlat`` converts the file's coordinates and the asset
    ids of the utilities in ``checked_utilities`` must be among ``positions``. All unknown
    assets are named in one error."""
    from sensors.catalogue import SENSOR_TYPES, CatalogueError, parse_sensor_record
    from sensors.ids import map_sensor_ids

    ids = map_sensor_ids(str(r.props.get("sensor_id", "")).strip() for r in records)
    external = {m: e for e, m in ids.items() if m != e}
    unknown: list[str] = []
    out = []
    for r in records:
        ext = str(r.props.get("sensor_id", "")).strip()
        props = dict(r.props)
        props["sensor_id"] = ids[ext]
        asset, kinds = asset_of(props)
        props["asset_id"] = asset
        stype = SENSOR_TYPES.get(str(props.get("sensor_type", "")).strip())
        utility = stype.utility.value if stype else None
        pos = find_asset(positions, utility, asset, kinds) if asset is not None else None
        if at_asset:
            if asset is None:
                raise CatalogueError(f"{r.where} ({ext}): --at-asset needs asset_id, node or link")
            if pos is None:
                unknown.append(f"{ext}: {asset}")
                continue
            lon, lat = pos
        else:
            if r.x is None or r.y is None:
                raise CatalogueError(f"{r.where} ({ext}): no coordinates (or use --at-asset)")
            lon, lat = to_lonlat(r.x, r.y)
            if asset is not None and utility in checked_utilities and pos is None:
                unknown.append(f"{ext}: {asset}")
                continue
        out.append(parse_sensor_record(props, float(lon), float(lat)))
    if unknown:
        raise CatalogueError(
            "assets not in the network layers (nothing stored): " + ", ".join(unknown)
        )
    return out, external


def _settings():
    from cityops.shell.stack import command_settings

    return command_settings()


def _lonlat_function(
    crs: str | None, origin: str | None, scale_m: float | None, model: Path | None
) -> Callable[[float, float], tuple[float, float]]:
    if origin is not None:
        from gis.epanet import model_to_lonlat, read_epanet
        from gis.filters import parse_point

        if model is None:
            raise ImportError_(
                "--origin places coordinates as the network import did: give that model with"
                " --model FILE.inp (its extent's centre lands on the origin)"
            )
        return model_to_lonlat(
            read_epanet(model), crs=crs or "EPSG:4544", origin=parse_point(origin), scale_m=scale_m
        )
    if scale_m is not None or model is not None:
        raise ImportError_("--scale-m and --model go with --origin")
    if crs is None:
        return lambda x, y: (x, y)
    from pyproj import Transformer

    t = Transformer.from_crs(crs, 4326, always_xy=True)
    return lambda x, y: t.transform(x, y)


MODEL_REASON = "derived from the network model"
MODEL_DAYS = 3  # simulated days a band covers


@dataclass(frozen=True)
class ModelLimit:
    sensor_id: str
    quantity: str
    simulated: tuple[float, float]
    alarm_low: float
    alarm_high: float
    deadband: float


def derive_model_limits(
    pressure,
    flowrate,
    wn,
    sensors: list[tuple[str, str, str]],
    margin: float,
    flow_medians: dict[str, float] | None = None,
) -> tuple[list[ModelLimit], list[str], list[str]]:
    """Per water sensor and modelled quantity of its type, a band round the simulated range;
    what was skipped, with why; and the flow meters whose band was turned round because their
    stored readings (``flow_medians``) run against the model's link direction."""
    from gis.epanet import MODEL_QUANTITIES, flip_flow_band, model_band, modelled_range
    from sensors.catalogue import SENSOR_TYPES

    out: list[ModelLimit] = []
    skipped: list[str] = []
    flipped: list[str] = []
    for sid, stype, asset in sensors:
        t = SENSOR_TYPES.get(stype)
        for q in t.quantities if t else ():
            if q not in MODEL_QUANTITIES:
                continue
            rng = modelled_range(pressure, flowrate, wn, q, asset)
            if rng is None:
                skipped.append(f"{sid} {q}: asset {asset} has no modelled {q}")
                continue
            if q == "pressure" and rng[0] < 0:
                # a model that draws a vacuum there (its own, or the layers without the
                # imported model's pumps) is not this sensor's normal: no band from it
                skipped.append(
                    f"{sid} {q}: the model's pressure at {asset} falls to {rng[0]:.0f} kPa"
                    " (the model draws a vacuum there: a band round it would never alarm)"
                )
                continue
            if q == "flow":
                lo, hi, turned = flip_flow_band(*rng, (flow_medians or {}).get(sid))
                if turned:
                    flipped.append(f"{sid} flow: stored readings run against {asset}'s direction")
                rng = (lo, hi)
            low, high, dead = model_band(q, *rng, margin=margin)
            out.append(ModelLimit(sid, q, rng, low, high, dead))
    return out, skipped, flipped


def register(sensors_app: typer.Typer) -> None:
    @sensors_app.command("limits")
    def sensors_limits(
        from_model: Annotated[
            bool,
            typer.Option(
                "--from-model",
                help="Derive each water sensor's band from a simulated day of the GIS model.",
            ),
        ] = False,
        margin: Annotated[
            float, typer.Option(help="Band beyond the simulated range, as a share of its span.")
        ] = 0.25,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print, write nothing.")] = False,
    ) -> None:
        """Per-sensor limits instead of the sensor types' defaults (the demo city's). With
        --from-model: simulate the water model over three days (the imported EPANET model while
        the layers are its own, with its patterns; else the layers with the daily demand pattern
        on every junction), and give each pressure, flow and level sensor on a network asset the band of
        its own simulated range plus a margin (at least 2 m of head, 0.5 L/s, 0.2 m), written as
        a limit override with the reason "derived from the network model". A flow band is signed
        in the link's direction (start to end node), turned round for a meter whose stored
        readings (import history first) run the other way."""
        import getpass

        from alerts.api import write_limit_override
        from cityops.kernel.db import connect
        from gis.epanet import fetch_water_model, simulate_day
        from gis.postgis import fetch_stored_medians, fetch_water_sensor_assets
        from simulators.profiles import WATER_DEMAND_PATTERN

        if not from_model:
            console.print("[red]say where the limits come from: --from-model[/]")
            raise typer.Exit(2)
        if not 0 <= margin <= 10:
            console.print(f"[red]--margin must be 0-10, not {margin}[/]")
            raise typer.Exit(2)
        try:
            with connect(_settings().database_url) as conn:
                sensors = fetch_water_sensor_assets(conn)
                if not sensors:
                    raise ImportError_("no active water sensor is placed on a network asset")
                wn = fetch_water_model(conn)
                # several days: tanks and the pumps they switch do not repeat from one day to
                # the next, and a band from one day alarms on the next
                pressure, flowrate = simulate_day(wn, WATER_DEMAND_PATTERN, days=MODEL_DAYS)
                medians = fetch_stored_medians(conn, [s[0] for s in sensors], "flow")
                limits, skipped, flipped = derive_model_limits(
                    pressure, flowrate, wn, sensors, margin, medians
                )
                if not dry_run:
                    user = f"cli:{getpass.getuser()}"
                    with conn.transaction():  # every sensor's band, or none
                        for lim in limits:
                            write_limit_override(
                                conn,
                                user,
                                lim.sensor_id,
                                lim.quantity,
                                lim.alarm_low,
                                lim.alarm_high,
                                lim.deadband,
                                MODEL_REASON,
                            )
        except (ImportError_, ValueError, LookupError) as exc:
            console.print(f"[red]{exc}[/]", soft_wrap=True)
            raise typer.Exit(2) from None
        for lim in limits:
            lo, hi = lim.simulated
            typer.echo(
                f"{lim.sensor_id}\t{lim.quantity}\tsimulated {lo:.4g}..{hi:.4g}"
                f"\tlimits {lim.alarm_low:.4g}..{lim.alarm_high:.4g}"
            )
        for s in skipped:
            console.print(f"skipped {s}", soft_wrap=True)
        for s in flipped:
            console.print(f"turned round {s}", soft_wrap=True)
        verb = "would write" if dry_run else "wrote"
        console.print(f"{verb} {len(limits)} limits from the network model", soft_wrap=True)

    @sensors_app.command("import")
    def sensors_import(
        file: Annotated[Path, typer.Argument(help="GeoJSON, CSV or GeoPackage of sensors.")],
        crs: Annotated[
            str | None,
            typer.Option(help="CRS of the file's coordinates (EPSG:xxxx); default EPSG:4326."),
        ] = None,
        origin: Annotated[
            str | None,
            typer.Option(
                help="LON,LAT: the file is in the EPANET model's units, placed as "
                "`cityops gis import-epanet --origin` placed the model (needs --model)."
            ),
        ] = None,
        scale_m: Annotated[
            float | None, typer.Option(help="Metres per model unit, as given to import-epanet.")
        ] = None,
        model: Annotated[
            Path | None, typer.Option(help="The EPANET .inp the network was imported from.")
        ] = None,
        at_asset: Annotated[
            bool,
            typer.Option(
                "--at-asset",
                help="Place each sensor at the network asset its asset_id/node/link names "
                "(a node's position, a pipe's midpoint); coordinates in the file are ignored.",
            ),
        ] = False,
        unchecked_assets: Annotated[
            bool,
            typer.Option(
                "--unchecked-assets",
                help="Do not check asset ids against the network layers (assets not in GIS).",
            ),
        ] = False,
    ) -> None:
        """Add or update sensors from a file (columns: sensor_id, sensor_type, name,
        district_adcode, asset_id (or node / link), status; Point geometry, lon/lat or x/y).
        Ids are kept as the utility writes them: an id that is not already lower-case
        [a-z0-9_-] is mapped (lower-case, other characters to '-') and its original kept as
        external_id; two ids mapping to one are refused. Nothing is stored on any error."""
        from cityops.kernel.db import connect
        from gis.postgis import fetch_asset_positions, fetch_loaded_networks, write_sensors
        from sensors.catalogue import SENSOR_TYPES, CatalogueError

        try:
            records = read_raw_records(file)
            to_lonlat = _lonlat_function(crs, origin, scale_m, model)
            with connect(_settings().database_url) as conn:
                by_utility: dict[str, set[str]] = {}
                for r in records:
                    t = SENSOR_TYPES.get(str(r.props.get("sensor_type", "")).strip())
                    a, _ = asset_of(r.props)
                    if t is not None and a is not None:
                        by_utility.setdefault(t.utility.value, set()).add(a)
                positions = {u: fetch_asset_positions(conn, u, a) for u, a in by_utility.items()}
                checked = set() if unchecked_assets else fetch_loaded_networks(conn)
                sensors, external = prepare_sensors(
                    records,
                    to_lonlat=to_lonlat,
                    positions=positions,
                    at_asset=at_asset,
                    checked_utilities=checked,
                )
                n = write_sensors(conn, sensors, external_ids=external)
        except (CatalogueError, ImportError_, ValueError, OSError) as exc:
            console.print(f"[red]{exc}[/]", soft_wrap=True, markup=True)
            raise typer.Exit(2) from None
        msg = f"imported {n} sensors from {file}"
        if at_asset:
            msg += f"; {n} placed at their network assets"
        if external:
            shown = ", ".join(f"{e} -> {m}" for m, e in sorted(external.items())[:10])
            more = "" if len(external) <= 10 else f" (and {len(external) - 10} more)"
            msg += f"; ids mapped: {shown}{more}"
        console.print(msg, soft_wrap=True)
