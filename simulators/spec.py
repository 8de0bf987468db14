"""Scenario files: YAML parsed and validated before anything runs (pure: text in, values out).

The file's shape, types and ranges are the pydantic models below; what pydantic refuses is
reported as a ``ScenarioError`` naming the file, the line and the field, for example
``scenarios/x.yaml: line 14: incidents[0].duration: must be > 0, got -1h``: the YAML loader
remembers the line of every key and item, and ``_problem`` words pydantic's errors the way a
scenario author reads them. Rules across fields (the step fits in the duration, an incident's
network is declared) are checked after the models, and the checks that need the network models
(does element "101" exist?) happen in simulators/world.py through ``Scenario.fail``, still
before anything is published. The format is described in docs/simulators.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

import yaml
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from cityops.kernel.clock import CHENGDU_TZ
from simulators.gas import GAS_INCIDENTS, GAS_NETWORKS
from simulators.power import POWER_INCIDENTS, POWER_NETWORKS
from simulators.water import GRID_RE, LIBRARY_NETWORKS, WATER_INCIDENTS

NETWORKS = ("water", "power", "gas")
NETWORK_MODELS = {"water": LIBRARY_NETWORKS, "power": POWER_NETWORKS, "gas": GAS_NETWORKS}
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

Loc = tuple[str | int, ...]  # a field's place in the file: ("incidents", 0, "element")


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
    """A mapping that remembers the 1-based line of itself and of each key's value."""

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


def line_of(doc: Any, loc: Loc) -> int | None:
    """The line of the field at ``loc``; for a field that is missing, its mapping's line."""
    line = getattr(doc, "line", None)
    node = doc
    for key in loc:
        if isinstance(node, YDict) and key in node:
            line, node = node.key_lines[str(key)], node[key]
        elif isinstance(node, YList) and isinstance(key, int) and key < len(node):
            line, node = node.item_lines[key], node[key]
        else:
            break
    return line


def field_path(loc: Loc) -> str:
    """``("incidents", 0, "element")`` -> ``incidents[0].element``."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


# -- values as the file writes them ----------------------------------------------------------
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


def _duration(*, signed: bool = False, positive: bool = False) -> BeforeValidator:
    def check(value: Any) -> float:
        s = parse_duration_s(value)
        if not signed and (s < 0 or (positive and s <= 0)):
            raise ValueError(f"must be {'> 0' if positive else '>= 0'}, got {value}")
        return s

    return BeforeValidator(check)


def _text(value: Any) -> str:
    """Names may be written as numbers (``element: 101``); a list or a mapping is a mistake."""
    if isinstance(value, bool | dict | list):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _choice(choices: tuple[str, ...], what: str = "") -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value)
        if text in choices:
            return text
        if what:
            raise ValueError(f"unknown {what} {text!r} (one of {', '.join(choices)})")
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")

    return check


def _names_or(other: str) -> Callable[[Any], Any]:
    """A list of element names, or else a ``count`` (>= 0), or ``all`` of them."""

    def check(value: Any) -> Any:
        if isinstance(value, list):
            return tuple(str(x) for x in value)
        if other == "count" and isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"must be >= 0, got {value}")
            return value
        if other == "all" and value == "all":
            return "all"
        expected = {
            "count": "a count or a list of element names",
            "all": "'all' or a list of names",
        }
        raise ValueError(f"expected {expected.get(other, 'a list of links')}")

    return check


def _all(value: Any) -> bool:
    if value != "all":
        raise ValueError("expected 'all'")
    return True


def _anchor(value: Any) -> tuple[float, float]:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    if (
        len(value) != 2
        or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in value)
        or not (100 <= value[0] <= 108 and 26 <= value[1] <= 34)
    ):
        raise ValueError("expected [lon, lat] in Sichuan (EPSG:4326), e.g. [104.06, 30.66]")
    return float(value[0]), float(value[1])


def _whole_seconds(step_s: float) -> float:
    if step_s < 1 or step_s != int(step_s):
        raise ValueError("must be a whole number of seconds >= 1")
    return step_s


def check_id_prefix(prefix: str) -> str:
    """``prefix`` if it can start sensor ids (ValueError otherwise)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,15}", prefix):
        raise ValueError("use 1-16 of [a-z0-9_-]")
    return prefix


def _probability(p: float) -> float:
    if p > 1:
        raise ValueError(f"must be within 0-1, got {p:g}")
    return p


Text = Annotated[str, BeforeValidator(_text)]
Utility = Annotated[str, BeforeValidator(_choice(NETWORKS))]
Number = Annotated[float, Strict(), AllowInfNan(False)]  # an int is welcome, a string is not
Positive = Annotated[float, Strict(), AllowInfNan(False), Field(gt=0.0)]
NonNegative = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0.0)]
Probability = Annotated[
    float, Strict(), AllowInfNan(False), Field(ge=0.0), AfterValidator(_probability)
]
Duration = Annotated[float, _duration()]  # [s], >= 0
PositiveDuration = Annotated[float, _duration(positive=True)]  # [s]
SignedDuration = Annotated[float, _duration(signed=True)]  # [s]
CountOrNames = Annotated[int | tuple[str, ...], BeforeValidator(_names_or("count"))]
AllOrNames = Annotated[str | tuple[str, ...], BeforeValidator(_names_or("all"))]
Count = Annotated[int, Strict(), Field(ge=0)]  # no 1.5, no true
AtLeastOne = Annotated[int, Strict(), Field(ge=1)]
MalformedKind = Annotated[str, BeforeValidator(_choice(MALFORMED_KINDS, "malformed kind"))]


class _Model(BaseModel):
    """One mapping of the file: unknown keys are refused by name, an empty value is a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic refuses it: "expected a mapping"
        names = sorted(f.alias or name for name, f in cls.model_fields.items())
        for key in data:
            if key not in names:
                raise PydanticCustomError(
                    "unknown_field", "unknown field", {"field": key, "expected": ", ".join(names)}
                )
        return cls._with_defaults({k: v for k, v in data.items() if v is not None})

    @classmethod
    def _with_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other fields of the mapping."""
        return data


# -- networks --------------------------------------------------------------------------------
class Wind(_Model):
    speed_m_s: NonNegative = 2.0  # [m/s]
    from_deg: Number = 270.0  # [deg] where it blows from, clockwise from north


class NetworkSpec(_Model):
    """A utility's network model and where it sits in Chengdu."""

    UTILITY: ClassVar[str] = ""
    model: Text  # a model name (or, for water, an .inp path, grid-RxC or gis)
    anchor: Annotated[tuple[float, float], BeforeValidator(_anchor)]  # [lon, lat] of its centre
    scale_m: Positive = 1.0  # [m] per model unit
    crs: Text | None = None  # the model's coordinates are metres in this CRS: used as they are
    wind: Wind = Wind()

    @classmethod
    def _with_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("model") == "gis":
            data.setdefault("crs", "EPSG:4544")  # the GIS layers' geom_m
        if data.get("crs"):
            data.setdefault("anchor", [104.06, 30.66])  # unused: the model has its own place
        return data

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        known = NETWORK_MODELS[cls.UTILITY]
        water = cls.UTILITY == "water"
        if model in known or (
            water and (model.endswith(".inp") or model == "gis" or re.match(GRID_RE, model))
        ):
            return model
        more = ", grid-<rows>x<cols>, or a path to an EPANET .inp file)" if water else ")"
        raise ValueError(
            f"unknown {cls.UTILITY} network {model!r} (one of {', '.join(known)}{more}"
        )

    @field_validator("crs")
    @classmethod
    def _projected(cls, crs: str | None) -> str | None:
        from pyproj import CRS

        try:
            if crs is not None and not CRS.from_user_input(crs).is_projected:
                raise ValueError("not a projected CRS")
        except Exception as exc:  # pyproj raises its own CRSError
            raise ValueError(f"expected a projected CRS such as EPSG:4544 ({exc})") from None
        return crs


class WaterNetworkSpec(NetworkSpec):
    UTILITY = "water"
    scale_m: Positive = 225.0  # Net3's units are about 225 m


class PowerNetworkSpec(NetworkSpec):
    UTILITY = "power"


class GasNetworkSpec(NetworkSpec):
    UTILITY = "gas"


class Networks(_Model):
    water: WaterNetworkSpec | None = None
    power: PowerNetworkSpec | None = None
    gas: GasNetworkSpec | None = None

    def named(self) -> dict[str, NetworkSpec]:
        """The networks the file declares, by utility (water, power, gas order)."""
        return {n: spec for n in NETWORKS if (spec := getattr(self, n)) is not None}


# -- sensors ----------------------------------------------------------------------------------
class WaterSensors(_Model):
    pressure: CountOrNames = 0  # a count placed spread out, or junction names
    flow: Annotated[tuple[str, ...], BeforeValidator(_names_or("links"))] = ()
    tanks: AllOrNames = ()
    inlets: Annotated[bool, BeforeValidator(_all)] = False  # supply meters out of every source
    # the pressure sensors' alarm limits: their types' defaults (the demo city's), or a band
    # round each one's own simulated range over two days, as `cityops sensors limits --from-model`
    # gives a utility's sensors
    limits: Annotated[str, BeforeValidator(_choice(("types", "model"), "limits"))] = "types"


class PowerSensors(_Model):
    buses: CountOrNames = 0
    transformers: AllOrNames = ()


class DetectorRing(_Model):
    """``count`` gas detectors on a circle of ``radius_m`` [m] around junction ``near``."""

    near: Text
    count: AtLeastOne = 4
    radius_m: Positive = 15.0
    confinement: Positive = 3.0  # gas accumulates in manholes, basements, kitchens


class GasSensors(_Model):
    pressure: CountOrNames = 0
    detectors: tuple[DetectorRing, ...] = ()
    background_detectors: Count = 0


class SensorPlan(_Model):
    """What to instrument, per network: element names, or a count placed automatically."""

    water: WaterSensors = WaterSensors()
    power: PowerSensors = PowerSensors()
    gas: GasSensors = GasSensors()


# -- incidents and faults -----------------------------------------------------------------------
class _Event(_Model):
    """Something that happens during the run, ``at`` seconds after its start, for
    ``duration`` seconds (absent: to the end)."""

    start_s: Duration = Field(alias="at")
    duration_s: PositiveDuration | None = Field(None, alias="duration")
    _event_id: int = PrivateAttr(0)
    _loc: Loc = PrivateAttr(())

    @property
    def event_id(self) -> int:
        """Incidents first (1, 2, ...), then faults, in file order."""
        return self._event_id

    @property
    def loc(self) -> Loc:
        """Where it is in the file: ("incidents", 0)."""
        return self._loc

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.start_s + self.duration_s

    def _params(self, common: type[_Event]) -> dict[str, Any]:
        own = [k for k in type(self).model_fields if k not in common.model_fields]
        return {k: v for k in own if (v := getattr(self, k)) is not None}


class IncidentSpec(_Event):
    network: Utility
    type: Text
    element: Text  # the junction, pipe, pump, line, switch ... it happens to
    # a planned operation (a valve closed for works, a reconfiguration): recorded in the works
    # calendar (alerts' ``works``) instead of as ground truth for detection to find
    planned: bool = False

    @property
    def works_kind(self) -> str:
        """Its kind in the works calendar: a valve operated, a network switched, or other."""
        if "valve" in self.type:
            return "valve_operation"
        if "switch" in self.type or "reconfig" in self.type:
            return "reconfiguration"
        return "maintenance"

    @property
    def params(self) -> dict[str, Any]:
        """The type's parameters as the file gives them (the ground truth lists them)."""
        return self._params(IncidentSpec)


class FaultSpec(_Event):
    type: Text
    sensors: tuple[Text, ...] = ()  # these sensor ids
    count: Count = 0  # and/or this many chosen (seeded) ...
    utility: Utility | None = None  # ... among this utility's

    @model_validator(mode="after")
    def _someone(self) -> FaultSpec:
        if not self.sensors and not self.count:
            raise ValueError("name the sensors or give a count")
        return self

    @property
    def params(self) -> dict[str, Any]:
        return self._params(FaultSpec)


def _optional(kind: Any) -> tuple[Any, None]:
    return kind | None, None


# Each type's parameters (absent: none): name -> (type, default), ``...`` for required. The
# ground truth lists those the file gives; the physics and faults.py default the others.
INCIDENT_PARAMS: dict[str, dict[str, Any]] = {
    "leak": {"area_cm2": (Positive, ...), "ramp": _optional(Duration)},  # [cm2], growth [s]
    "burst": {"area_cm2": (Positive, ...)},
    "overload": {"factor": (Positive, ...)},  # load multiplier downstream of the line
    "voltage_sag": {"element": (Text, "grid"), "vm_pu": _optional(Positive)},
    "regulator_fault": {"element": (Text, "supply"), "p_bar": _optional(Positive)},  # [bar]
}
FAULT_PARAMS: dict[str, dict[str, Any]] = {
    "noise": {"sigma_pct": _optional(NonNegative)},
    "drift": {"pct_per_day": _optional(NonNegative)},
    "spikes": {"probability": _optional(Probability), "magnitude_pct": _optional(NonNegative)},
    "dropout": {"probability": _optional(Probability)},
    "clock_skew": {"offset": _optional(SignedDuration)},  # [s]
    "duplicate": {"probability": _optional(Probability)},
    "out_of_order": {
        "delay_steps": _optional(AtLeastOne),
        "probability": _optional(Probability),
    },
    "malformed": {
        "probability": _optional(Probability),
        "kinds": _optional(tuple[MalformedKind, ...]),
    },
}


def _tagged(base: type[_Event], types: dict[str, tuple[str, ...]], table: dict) -> Any:
    """The union of ``base``'s models per type, chosen by the tag ``"<group>:<type>"`` (the
    network for incidents, "fault" for faults); pydantic puts the tag in an error's location,
    where ``_problem`` tells it from a field name by its colon."""
    models = {
        t: create_model(f"{base.__name__}_{t}", __base__=base, **table.get(t, {}))
        for kinds in types.values()
        for t in kinds
    }
    choices = [Annotated[models[t], Tag(f"{g}:{t}")] for g, kinds in types.items() for t in kinds]
    group = "network" if base is IncidentSpec else None

    def tag(item: Any) -> str | None:
        if not isinstance(item, dict):
            return None
        return f"{item.get(group) if group else 'fault'}:{item.get('type')}"

    return Annotated[Union[tuple(choices)], Discriminator(tag)]  # noqa: UP007


if TYPE_CHECKING:
    AnyIncident = IncidentSpec
    AnyFault = FaultSpec
else:
    AnyIncident = _tagged(IncidentSpec, INCIDENT_TYPES, INCIDENT_PARAMS)
    AnyFault = _tagged(FaultSpec, {"fault": FAULT_TYPES}, FAULT_PARAMS)


class Place(_Model):
    """A named place (a school, a hospital) at a network element, for the ground truth."""

    name: Text
    network: Utility
    element: Text


# -- the scenario -------------------------------------------------------------------------------
class Scenario(_Model):
    name: Text
    description: Text = ""
    start_ms: Annotated[int, BeforeValidator(parse_time_ms)] | None = Field(None, alias="start")
    duration_s: PositiveDuration = Field(alias="duration")
    step_s: Annotated[float, _duration(positive=True), AfterValidator(_whole_seconds)] = Field(
        alias="step"
    )
    speedup: NonNegative = 0.0  # simulated s per wall s; 0: as fast as possible
    seed: Count = 1
    # how often the ground truth's counterfactuals are evaluated [s] (default: every step)
    truth_every_s: PositiveDuration = Field(alias="truth_every")
    id_prefix: Annotated[str, BeforeValidator(_text), AfterValidator(check_id_prefix)] = "sim"
    encoding: Annotated[str, BeforeValidator(_choice(ENCODINGS))] = "compact"
    batch_steps: AtLeastOne = 1
    identities: Annotated[str, BeforeValidator(_choice(IDENTITIES))] = "service"
    networks: Networks
    sensors: SensorPlan = SensorPlan()
    incidents: tuple[AnyIncident, ...] = ()
    faults: tuple[AnyFault, ...] = ()
    places: tuple[Place, ...] = ()
    _source: str = PrivateAttr("<scenario>")
    _doc: Any = PrivateAttr(None)  # the parsed file, for the lines of later errors

    @classmethod
    def _with_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        if "step" in data:
            data.setdefault("truth_every", data["step"])
        return data

    @model_validator(mode="after")
    def _number_events(self) -> Scenario:
        for i, inc in enumerate(self.incidents):
            inc._loc, inc._event_id = ("incidents", i), i + 1
        for i, f in enumerate(self.faults):
            f._loc, f._event_id = ("faults", i), len(self.incidents) + i + 1
        return self

    @property
    def source(self) -> str:
        return self._source

    @property
    def steps(self) -> int:
        return math.floor(self.duration_s / self.step_s + 1e-9)

    def fail(self, loc: Loc, problem: str) -> ScenarioError:
        """The error for the field at ``loc`` (its line when the scenario came from a file)."""
        return ScenarioError(self._source, line_of(self._doc, loc), field_path(loc), problem)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario file's text (structure, types, ranges; not elements)."""
    try:
        doc = yaml.load(text, Loader=_Loader)
    except ScenarioError as exc:
        raise ScenarioError(source, exc.line, exc.field, exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark else None
        raise ScenarioError(source, line, "", f"malformed YAML: {problem}") from None
    if not isinstance(doc, YDict):
        raise ScenarioError(
            source, 1, "", "a scenario is a YAML mapping (name, duration, step, ...)"
        )
    try:
        scn = Scenario.model_validate(doc)
    except ValidationError as exc:
        loc, problem = _problem(exc.errors()[0])
        raise ScenarioError(source, line_of(doc, loc), field_path(loc), problem) from None
    scn._source, scn._doc = source, doc
    _check_across_fields(scn)
    return scn


def _problem(err: ErrorDetails) -> tuple[Loc, str]:
    """Where and what, in a scenario author's words, for one of pydantic's errors."""
    loc = tuple(k for k in err["loc"] if not (isinstance(k, str) and ":" in k))  # no tags
    kind, ctx, value = err["type"], err.get("ctx", {}), err["input"]
    if kind == "unknown_field":
        return (*loc, ctx["field"]), f"unknown field (expected one of {ctx['expected']})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _unknown_type(loc, value)
    words = {
        "missing": "is required",
        "value_error": str(ctx.get("error")),
        "float_type": f"expected a number, got {value!r}",
        "finite_number": f"expected a number, got {value!r}",
        "int_type": f"expected an integer, got {value!r}",
        "greater_than": f"must be > {ctx.get('gt')}, got {value}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}, got {value}",
        "model_type": "expected a mapping",
        "tuple_type": "expected a list",
    }
    return loc, words.get(kind, err["msg"])


def _unknown_type(loc: Loc, item: Any) -> tuple[Loc, str]:
    """An incident or fault whose network or type has no model."""
    if not isinstance(item, dict):
        return loc, "expected a mapping"
    network = item.get("network")
    if loc[0] == "incidents":
        if network is None:
            return (*loc, "network"), "is required"
        try:
            network = _choice(NETWORKS)(network)
        except ValueError as exc:
            return (*loc, "network"), str(exc)
    if item.get("type") is None:
        return (*loc, "type"), "is required"
    try:
        kind = _text(item["type"])
    except ValueError as exc:
        return (*loc, "type"), str(exc)
    if loc[0] == "incidents":
        known = INCIDENT_TYPES[str(network)]
        return (*loc, "type"), (
            f"unknown incident type {kind!r} for {network} (one of {', '.join(known)})"
        )
    return (*loc, "type"), f"unknown fault type {kind!r} (one of {', '.join(FAULT_TYPES)})"


def _check_across_fields(scn: Scenario) -> None:
    if scn.step_s > scn.duration_s:
        raise scn.fail(("step",), "is longer than the duration")
    if abs(scn.truth_every_s / scn.step_s - round(scn.truth_every_s / scn.step_s)) > 1e-9:
        raise scn.fail(("truth_every",), "must be a multiple of step")
    declared = scn.networks.named()
    if not declared:
        raise scn.fail(("networks",), "name at least one of water, power, gas")
    for net in NETWORKS:
        if net in scn.sensors.model_fields_set and net not in declared:
            raise scn.fail(("sensors", net), f"no {net} network in networks")
    located = [(inc.loc, inc.network) for inc in scn.incidents]
    located += [(("places", i), p.network) for i, p in enumerate(scn.places)]
    for loc, network in located:
        if network not in declared:
            raise scn.fail((*loc, "network"), f"no {network} network in networks")
    for event in (*scn.incidents, *scn.faults):
        if event.start_s >= scn.duration_s:
            raise scn.fail((*event.loc, "at"), "starts after the scenario ends")
