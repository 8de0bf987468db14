"""Scenario files: YAML parsed and validated before anything runs (pure: text in, values out).

Every mistake is reported as a ``ScenarioError`` naming the file, the line and the field, for
example ``scenarios/x.yaml: line 14: incidents[0].duration: must be >= 0, got -1h``. Checks
that need the network models (does element "101" exist?) happen in simulators/world.py, with
the same kind of message, still before anything is published. The format is described in
docs/simulators.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml

from simulators.gas import GAS_INCIDENTS, GAS_NETWORKS
from simulators.power import POWER_INCIDENTS, POWER_NETWORKS
from simulators.water import GRID_RE, LIBRARY_NETWORKS, WATER_INCIDENTS

CHENGDU_TZ = timezone(timedelta(hours=8))
NETWORKS = ("water", "power", "gas")
INCIDENT_TYPES = {"water": WATER_INCIDENTS, "power": POWER_INCIDENTS, "gas": GAS_INCIDENTS}
FAULT_TYPES = (
    "noise",
    "drift",
    "stuck",
    "spikes",
    "dropout",
    "clock_skew",
    "duplicate",
    "out_of_order",
    "malformed",
)
MALFORMED_KINDS = (
    "not_json",
    "truncated",
    "missing_ts",
    "ts_seconds",
    "unknown_unit",
    "unknown_quantity",
    "non_finite",
    "id_mismatch",
    "empty",
    "physically_impossible",
)
ENCODINGS = ("compact", "senml")
IDENTITIES = ("service", "device")
_DURATION_RE = re.compile(r"^\s*(-?)\s*((?:\d+(?:\.\d+)?\s*(?:ms|sec|min|s|m|h|d|w)\s*)+)$")
_PIECE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class ScenarioError(ValueError):
    """A scenario that will not run; the message names the source, line and field."""

    def __init__(self, source: str, line: int | None, field_path: str, problem: str) -> None:
        where = f"{source}: line {line}" if line else source
        super().__init__(
            f"{where}: {field_path}: {problem}" if field_path else f"{where}: {problem}"
        )
        self.source = source
        self.line = line
        self.field = field_path
        self.problem = problem


# -- YAML with line numbers ----------------------------------------------------------------
class YDict(dict):
    """A mapping that remembers the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


class YList(list):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> YDict:
    loader.flatten_mapping(node)
    out = YDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise ScenarioError(
                "", key_node.start_mark.line + 1, key, "appears twice in the same mapping"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = value_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [n.start_mark.line + 1 for n in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


# -- the scenario ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Where:
    """Where a value came from, to name it in later errors."""

    field: str
    line: int | None
    key_lines: tuple[tuple[str, int], ...] = ()

    def line_of(self, key: str) -> int | None:
        return dict(self.key_lines).get(key, self.line)


def _where(path: str, line: int | None, m: Any) -> Where:
    lines = tuple(m.key_lines.items()) if isinstance(m, YDict) else ()
    return Where(path, line, lines)


@dataclass(frozen=True)
class NetworkSpec:
    model: str
    anchor_lon: float
    anchor_lat: float
    scale_m: float = 1.0
    crs: str | None = None  # the model's coordinates are metres in this CRS: used as they are
    wind_speed_m_s: float = 2.0
    wind_from_deg: float = 270.0


@dataclass(frozen=True)
class DetectorRing:
    near: str  # gas junction name
    count: int
    radius_m: float
    confinement: float
    where: Where


@dataclass(frozen=True)
class SensorPlan:
    """What to instrument, per network: element names, or a count placed automatically."""

    water_pressure: int | tuple[str, ...] = 0
    water_flow: tuple[str, ...] = ()
    water_tanks: str | tuple[str, ...] = ()  # "all" or names
    water_inlets: bool = False  # flow meters on every link out of a reservoir or tank
    power_buses: int | tuple[str, ...] = 0
    power_transformers: str | tuple[str, ...] = ()
    gas_pressure: int | tuple[str, ...] = 0
    gas_detectors: tuple[DetectorRing, ...] = ()
    gas_background_detectors: int = 0
    where: dict[str, Where] = field(default_factory=dict)


@dataclass(frozen=True)
class IncidentSpec:
    event_id: int
    network: str
    type: str
    element: str
    start_s: float
    end_s: float | None
    params: dict[str, float]
    where: Where


@dataclass(frozen=True)
class FaultSpec:
    event_id: int
    type: str
    sensors: tuple[str, ...]  # explicit sensor ids
    count: int  # or this many chosen (seeded) among the run's sensors
    utility: str | None  # ... of this utility
    start_s: float
    end_s: float | None
    params: dict[str, Any]
    where: Where


@dataclass(frozen=True)
class Place:
    name: str
    network: str
    element: str
    where: Where


@dataclass(frozen=True)
class Scenario:
    source: str
    name: str
    description: str
    start_ms: int | None  # None: now
    duration_s: float
    step_s: float
    speedup: float
    seed: int
    truth_every_s: float  # how often the ground truth's counterfactuals are evaluated [s]
    id_prefix: str
    encoding: str
    batch_steps: int
    identities: str
    networks: dict[str, NetworkSpec]
    sensors: SensorPlan
    incidents: tuple[IncidentSpec, ...]
    faults: tuple[FaultSpec, ...]
    places: tuple[Place, ...]

    @property
    def steps(self) -> int:
        return math.floor(self.duration_s / self.step_s + 1e-9)


# -- parsing helpers ------------------------------------------------------------------------
class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, path: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, line, path, problem)


def _line(m: Any, key: str) -> int | None:
    if isinstance(m, YDict):
        return m.key_lines.get(key, m.line)
    return None


def parse_duration_s(value: Any) -> float:
    """Seconds from a number (seconds) or a string such as ``90s``, ``15m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        s = float(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            text += "s"  # a bare number is seconds
        m = _DURATION_RE.match(text)
        if not m:
            raise ValueError(f"expected a duration such as 90s, 15m, 2h30m or 1d, got {value!r}")
        s = sum(float(n) * _UNIT_S[u] for n, u in _PIECE_RE.findall(m.group(2)))
        if m.group(1):
            s = -s
    if not math.isfinite(s):
        raise ValueError(f"must be finite, got {value!r}")
    return s


def parse_time_ms(value: Any) -> int:
    """Epoch ms from an ISO 8601 time; without an offset it is Chengdu time (UTC+8)."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 time, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CHENGDU_TZ)
    return round(dt.timestamp() * 1000)


def _allowed(ctx: _Ctx, m: YDict, path: str, allowed: set[str]) -> None:
    for key in m:
        if key not in allowed:
            raise ctx.fail(
                _line(m, key),
                f"{path}.{key}" if path else key,
                f"unknown field (expected one of {', '.join(sorted(allowed))})",
            )


def _get(ctx: _Ctx, m: YDict, key: str, path: str, kind: str, default: Any = ..., **kw: Any):
    p = f"{path}.{key}" if path else key
    if key not in m or m[key] is None:
        if default is ...:
            raise ctx.fail(m.line if isinstance(m, YDict) else None, p, "is required")
        return default
    v = m[key]
    line = _line(m, key)
    try:
        if kind == "duration":
            out: Any = parse_duration_s(v)
            if out < kw.get("min", 0.0) or (kw.get("positive") and out <= 0):
                raise ValueError(f"must be {'> 0' if kw.get('positive') else '>= 0'}, got {v}")
            return out
        if kind == "time":
            return parse_time_ms(v)
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"expected an integer, got {v!r}")
            if v < kw.get("min", -(2**63)):
                raise ValueError(f"must be >= {kw['min']}, got {v}")
            return v
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"expected a number, got {v!r}")
            if "min" in kw and v < kw["min"]:
                raise ValueError(f"must be >= {kw['min']}, got {v}")
            if "gt" in kw and v <= kw["gt"]:
                raise ValueError(f"must be > {kw['gt']}, got {v}")
            if "max" in kw and v > kw["max"]:
                raise ValueError(f"must be <= {kw['max']}, got {v}")
            return float(v)
        if kind == "str":
            if isinstance(v, bool | dict | list):
                raise ValueError(f"expected text, got {v!r}")
            s = str(v)
            if "choices" in kw and s not in kw["choices"]:
                raise ValueError(f"{s!r} is not one of {', '.join(kw['choices'])}")
            return s
        if kind == "map":
            if not isinstance(v, dict):
                raise ValueError("expected a mapping")
            return v
        if kind == "list":
            if not isinstance(v, list):
                raise ValueError("expected a list")
            return v
    except ValueError as exc:
        raise ctx.fail(line, p, str(exc)) from None
    raise AssertionError(kind)


def _names_or_count(ctx: _Ctx, m: YDict, key: str, path: str, *, allow_all: bool = False):
    if key not in m or m[key] is None:
        return () if allow_all else 0
    v = m[key]
    line = _line(m, key)
    p = f"{path}.{key}"
    if allow_all and v == "all":
        return "all"
    if isinstance(v, bool):
        raise ctx.fail(line, p, "expected a count or a list of element names")
    if isinstance(v, int) and not allow_all:
        if v < 0:
            raise ctx.fail(line, p, f"must be >= 0, got {v}")
        return v
    if isinstance(v, list):
        return tuple(str(x) for x in v)
    raise ctx.fail(
        line, p, "expected " + ("'all' or a list of names" if allow_all else "a count or a list")
    )


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario file's text (structure, types, ranges; not elements)."""
    ctx = _Ctx(source)
    try:
        doc = yaml.load(text, Loader=_Loader)
    except ScenarioError as exc:
        raise ctx.fail(exc.line, exc.field, exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ctx.fail(mark.line + 1 if mark else None, "", f"malformed YAML: {problem}") from None
    if not isinstance(doc, YDict):
        raise ctx.fail(1, "", "a scenario is a YAML mapping (name, duration, step, ...)")
    _allowed(
        ctx,
        doc,
        "",
        {
            "name",
            "description",
            "start",
            "duration",
            "step",
            "speedup",
            "seed",
            "id_prefix",
            "encoding",
            "batch_steps",
            "identities",
            "truth_every",
            "networks",
            "sensors",
            "places",
            "incidents",
            "faults",
        },
    )
    name = _get(ctx, doc, "name", "", "str")
    duration_s = _get(ctx, doc, "duration", "", "duration", positive=True)
    step_s = _get(ctx, doc, "step", "", "duration", positive=True)
    if step_s > duration_s:
        raise ctx.fail(_line(doc, "step"), "step", "is longer than the duration")
    if step_s < 1 or step_s != int(step_s):
        raise ctx.fail(_line(doc, "step"), "step", "must be a whole number of seconds >= 1")
    truth_every_s = _get(ctx, doc, "truth_every", "", "duration", step_s, positive=True)
    if abs(truth_every_s / step_s - round(truth_every_s / step_s)) > 1e-9:
        raise ctx.fail(_line(doc, "truth_every"), "truth_every", "must be a multiple of step")
    id_prefix = _get(ctx, doc, "id_prefix", "", "str", "sim")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,15}", id_prefix):
        raise ctx.fail(_line(doc, "id_prefix"), "id_prefix", "use 1-16 of [a-z0-9_-]")
    networks = _parse_networks(ctx, _get(ctx, doc, "networks", "", "map"))
    sensors = _parse_sensors(ctx, _get(ctx, doc, "sensors", "", "map", YDict()), networks)
    incidents = tuple(
        _parse_incident(ctx, item, i, line, networks, duration_s)
        for i, (item, line) in enumerate(_items(ctx, doc, "incidents"))
    )
    faults = tuple(
        _parse_fault(ctx, item, i, line, len(incidents), duration_s)
        for i, (item, line) in enumerate(_items(ctx, doc, "faults"))
    )
    places = tuple(
        _parse_place(ctx, item, i, line, networks)
        for i, (item, line) in enumerate(_items(ctx, doc, "places"))
    )
    return Scenario(
        source=source,
        name=name,
        description=_get(ctx, doc, "description", "", "str", ""),
        start_ms=_get(ctx, doc, "start", "", "time", None),
        duration_s=duration_s,
        step_s=step_s,
        speedup=_get(ctx, doc, "speedup", "", "float", 0.0, min=0.0),
        seed=_get(ctx, doc, "seed", "", "int", 1, min=0),
        truth_every_s=truth_every_s,
        id_prefix=id_prefix,
        encoding=_get(ctx, doc, "encoding", "", "str", "compact", choices=ENCODINGS),
        batch_steps=_get(ctx, doc, "batch_steps", "", "int", 1, min=1),
        identities=_get(ctx, doc, "identities", "", "str", "service", choices=IDENTITIES),
        networks=networks,
        sensors=sensors,
        incidents=incidents,
        faults=faults,
        places=places,
    )


def _items(ctx: _Ctx, doc: YDict, key: str) -> list[tuple[YDict, int | None]]:
    items = _get(ctx, doc, key, "", "list", YList())
    lines = getattr(items, "item_lines", [None] * len(items))
    out = []
    for i, (item, line) in enumerate(zip(items, lines, strict=True)):
        if not isinstance(item, YDict):
            raise ctx.fail(line, f"{key}[{i}]", "expected a mapping")
        out.append((item, line))
    return out


def _parse_networks(ctx: _Ctx, m: YDict) -> dict[str, NetworkSpec]:
    _allowed(ctx, m, "networks", set(NETWORKS))
    models = {"water": LIBRARY_NETWORKS, "power": POWER_NETWORKS, "gas": GAS_NETWORKS}
    out: dict[str, NetworkSpec] = {}
    for net, spec in m.items():
        path = f"networks.{net}"
        if not isinstance(spec, YDict):
            raise ctx.fail(_line(m, net), path, "expected a mapping")
        _allowed(ctx, spec, path, {"model", "anchor", "scale_m", "wind", "crs"})
        model = _get(ctx, spec, "model", path, "str")
        water_ok = net == "water" and (
            model.endswith(".inp") or model == "gis" or re.match(GRID_RE, model)
        )
        if model not in models[net] and not water_ok:
            raise ctx.fail(
                _line(spec, "model"),
                f"{path}.model",
                f"unknown {net} network {model!r} (one of {', '.join(models[net])}"
                + (
                    ", grid-<rows>x<cols>, or a path to an EPANET .inp file)"
                    if net == "water"
                    else ")"
                ),
            )
        crs = _get(ctx, spec, "crs", path, "str", None)
        if crs is not None:
            try:
                from pyproj import CRS

                if not CRS.from_user_input(crs).is_projected:
                    raise ValueError("not a projected CRS")
            except Exception as exc:  # pyproj raises its own CRSError
                raise ctx.fail(
                    _line(spec, "crs"),
                    f"{path}.crs",
                    f"expected a projected CRS such as EPSG:4544 ({exc})",
                ) from None
        if model == "gis":
            crs = "EPSG:4544"  # the layers' geom_m
        anchor = _get(ctx, spec, "anchor", path, "list", [104.06, 30.66] if crs else ...)
        if (
            len(anchor) != 2
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in anchor)
            or not (100 <= anchor[0] <= 108 and 26 <= anchor[1] <= 34)
        ):
            raise ctx.fail(
                _line(spec, "anchor"),
                f"{path}.anchor",
                "expected [lon, lat] in Sichuan (EPSG:4326), e.g. [104.06, 30.66]",
            )
        wind = _get(ctx, spec, "wind", path, "map", YDict())
        _allowed(ctx, wind, f"{path}.wind", {"speed_m_s", "from_deg"})
        out[net] = NetworkSpec(
            model=model,
            anchor_lon=float(anchor[0]),
            anchor_lat=float(anchor[1]),
            scale_m=_get(
                ctx, spec, "scale_m", path, "float", 225.0 if net == "water" else 1.0, gt=0.0
            ),
            crs=crs,
            wind_speed_m_s=_get(ctx, wind, "speed_m_s", f"{path}.wind", "float", 2.0, min=0.0),
            wind_from_deg=_get(ctx, wind, "from_deg", f"{path}.wind", "float", 270.0),
        )
    if not out:
        raise ctx.fail(m.line, "networks", "name at least one of water, power, gas")
    return out


def _parse_sensors(ctx: _Ctx, m: YDict, networks: dict[str, NetworkSpec]) -> SensorPlan:
    _allowed(ctx, m, "sensors", set(NETWORKS))
    for net in m:
        if net not in networks:
            raise ctx.fail(_line(m, net), f"sensors.{net}", f"no {net} network in networks")
    kw: dict[str, Any] = {}
    where: dict[str, Where] = {}
    if isinstance(m.get("water"), YDict):
        w = m["water"]
        _allowed(ctx, w, "sensors.water", {"pressure", "flow", "tanks", "inlets"})
        kw["water_pressure"] = _names_or_count(ctx, w, "pressure", "sensors.water")
        flow = _names_or_count(ctx, w, "flow", "sensors.water")
        if isinstance(flow, int) and flow:
            raise ctx.fail(_line(w, "flow"), "sensors.water.flow", "expected a list of links")
        kw["water_flow"] = flow or ()
        kw["water_tanks"] = _names_or_count(ctx, w, "tanks", "sensors.water", allow_all=True)
        if "inlets" in w and w["inlets"] not in ("all", None):
            raise ctx.fail(_line(w, "inlets"), "sensors.water.inlets", "expected 'all'")
        kw["water_inlets"] = w.get("inlets") == "all"
        for k in ("pressure", "flow", "tanks", "inlets"):
            where[f"water.{k}"] = Where(f"sensors.water.{k}", _line(w, k))
    if isinstance(m.get("power"), YDict):
        p = m["power"]
        _allowed(ctx, p, "sensors.power", {"buses", "transformers"})
        kw["power_buses"] = _names_or_count(ctx, p, "buses", "sensors.power")
        kw["power_transformers"] = _names_or_count(
            ctx, p, "transformers", "sensors.power", allow_all=True
        )
        for k in ("buses", "transformers"):
            where[f"power.{k}"] = Where(f"sensors.power.{k}", _line(p, k))
    if isinstance(m.get("gas"), YDict):
        g = m["gas"]
        _allowed(ctx, g, "sensors.gas", {"pressure", "detectors", "background_detectors"})
        kw["gas_pressure"] = _names_or_count(ctx, g, "pressure", "sensors.gas")
        kw["gas_background_detectors"] = _get(
            ctx, g, "background_detectors", "sensors.gas", "int", 0, min=0
        )
        rings = []
        for i, (ring, line) in enumerate(_items(ctx, g, "detectors")):
            path = f"sensors.gas.detectors[{i}]"
            _allowed(ctx, ring, path, {"near", "count", "radius_m", "confinement"})
            rings.append(
                DetectorRing(
                    near=_get(ctx, ring, "near", path, "str"),
                    count=_get(ctx, ring, "count", path, "int", 4, min=1),
                    radius_m=_get(ctx, ring, "radius_m", path, "float", 15.0, gt=0.0),
                    confinement=_get(ctx, ring, "confinement", path, "float", 3.0, gt=0.0),
                    where=_where(path, line, ring),
                )
            )
        kw["gas_detectors"] = tuple(rings)
        where["gas.pressure"] = Where("sensors.gas.pressure", _line(g, "pressure"))
    return SensorPlan(**kw, where=where)


INCIDENT_PARAMS = {
    "leak": {"area_cm2": "float", "ramp": "duration"},
    "burst": {"area_cm2": "float"},
    "valve_closure": {},
    "pump_trip": {},
    "line_outage": {},
    "switch_close": {},
    "switch_open": {},
    "overload": {"factor": "float"},
    "voltage_sag": {"vm_pu": "float"},
    "pipe_break": {},
    "regulator_fault": {"p_bar": "float"},
}
_INCIDENT_REQUIRED = {"leak": ("area_cm2",), "burst": ("area_cm2",), "overload": ("factor",)}


def _parse_incident(
    ctx: _Ctx,
    m: YDict,
    i: int,
    line: int | None,
    networks: dict[str, NetworkSpec],
    duration_s: float,
) -> IncidentSpec:
    path = f"incidents[{i}]"
    network = _get(ctx, m, "network", path, "str", choices=NETWORKS)
    if network not in networks:
        raise ctx.fail(_line(m, "network"), f"{path}.network", f"no {network} network in networks")
    itype = _get(ctx, m, "type", path, "str")
    if itype not in INCIDENT_TYPES[network]:
        raise ctx.fail(
            _line(m, "type"),
            f"{path}.type",
            f"unknown incident type {itype!r} for {network} "
            f"(one of {', '.join(INCIDENT_TYPES[network])})",
        )
    params_spec = INCIDENT_PARAMS[itype]
    _allowed(ctx, m, path, {"network", "type", "element", "at", "duration", *params_spec})
    start_s = _get(ctx, m, "at", path, "duration")
    dur = _get(ctx, m, "duration", path, "duration", None, positive=True)
    if start_s >= duration_s:
        raise ctx.fail(_line(m, "at"), f"{path}.at", "starts after the scenario ends")
    params: dict[str, float] = {}
    for key, kind in params_spec.items():
        default = ... if key in _INCIDENT_REQUIRED.get(itype, ()) else None
        v = _get(ctx, m, key, path, kind, default, **({"gt": 0.0} if kind == "float" else {}))
        if v is not None:
            params[key] = v
    implied = {"voltage_sag": "grid", "regulator_fault": "supply"}
    element = _get(ctx, m, "element", path, "str", implied.get(itype, ...))
    return IncidentSpec(
        event_id=i + 1,
        network=network,
        type=itype,
        element=element,
        start_s=start_s,
        end_s=None if dur is None else start_s + dur,
        params=params,
        where=_where(path, line, m),
    )


FAULT_PARAMS = {
    "noise": {"sigma_pct": "float"},
    "drift": {"pct_per_day": "float"},
    "stuck": {},
    "spikes": {"probability": "float", "magnitude_pct": "float"},
    "dropout": {"probability": "float"},
    "clock_skew": {"offset": "duration_signed"},
    "duplicate": {"probability": "float"},
    "out_of_order": {"delay_steps": "int", "probability": "float"},
    "malformed": {"probability": "float", "kinds": "list"},
}


def _parse_fault(
    ctx: _Ctx, m: YDict, i: int, line: int | None, n_incidents: int, duration_s: float
) -> FaultSpec:
    path = f"faults[{i}]"
    ftype = _get(ctx, m, "type", path, "str")
    if ftype not in FAULT_TYPES:
        raise ctx.fail(
            _line(m, "type"),
            f"{path}.type",
            f"unknown fault type {ftype!r} (one of {', '.join(FAULT_TYPES)})",
        )
    spec = FAULT_PARAMS[ftype]
    _allowed(ctx, m, path, {"type", "sensors", "count", "utility", "at", "duration", *spec})
    start_s = _get(ctx, m, "at", path, "duration")
    if start_s >= duration_s:
        raise ctx.fail(_line(m, "at"), f"{path}.at", "starts after the scenario ends")
    dur = _get(ctx, m, "duration", path, "duration", None, positive=True)
    sensors = tuple(str(s) for s in _get(ctx, m, "sensors", path, "list", []))
    count = _get(ctx, m, "count", path, "int", 0, min=0)
    if not sensors and not count:
        raise ctx.fail(line, path, "name the sensors or give a count")
    utility = _get(ctx, m, "utility", path, "str", None, choices=NETWORKS)
    params: dict[str, Any] = {}
    for key, kind in spec.items():
        if key not in m:
            continue
        p = f"{path}.{key}"
        if kind == "duration_signed":
            try:
                params[key] = parse_duration_s(m[key])
            except ValueError as exc:
                raise ctx.fail(_line(m, key), p, str(exc)) from None
        elif kind == "list":
            kinds = _get(ctx, m, key, path, "list")
            bad = [k for k in kinds if k not in MALFORMED_KINDS]
            if bad:
                raise ctx.fail(
                    _line(m, key),
                    p,
                    f"unknown malformed kind {bad[0]!r} (one of {', '.join(MALFORMED_KINDS)})",
                )
            params[key] = tuple(kinds)
        elif kind == "int":
            params[key] = _get(ctx, m, key, path, "int", min=1)
        else:
            v = _get(ctx, m, key, path, "float", min=0.0)
            if key == "probability" and v > 1:
                raise ctx.fail(_line(m, key), p, f"must be within 0-1, got {v}")
            params[key] = v
    return FaultSpec(
        event_id=n_incidents + i + 1,
        type=ftype,
        sensors=sensors,
        count=count,
        utility=utility,
        start_s=start_s,
        end_s=None if dur is None else start_s + dur,
        params=params,
        where=_where(path, line, m),
    )


def _parse_place(
    ctx: _Ctx, m: YDict, i: int, line: int | None, networks: dict[str, NetworkSpec]
) -> Place:
    path = f"places[{i}]"
    _allowed(ctx, m, path, {"name", "network", "element"})
    network = _get(ctx, m, "network", path, "str", choices=NETWORKS)
    if network not in networks:
        raise ctx.fail(_line(m, "network"), f"{path}.network", f"no {network} network in networks")
    return Place(
        name=_get(ctx, m, "name", path, "str"),
        network=network,
        element=_get(ctx, m, "element", path, "str"),
        where=_where(path, line, m),
    )
