"""A utility's sensor ids to catalogue ids (pure).

The catalogue id travels in bus topics, so it is restricted to ``^[a-z0-9][a-z0-9_-]{0,63}$``.
A utility writes ids its own way ("T1", "PS 12/a"). The rule (docs/decisions/0056):

1. trim spaces, lower-case (Unicode case folding is not used: ids are ASCII in practice);
2. every character outside ``[a-z0-9_-]`` becomes ``-``;
3. leading ``-``/``_`` are dropped (the first character must be a letter or digit);
4. at most 64 characters.

An id already valid is kept as it is. The original is kept as ``sensors.external_id`` when it
differs. Two ids of one file that map to the same catalogue id are refused, never merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sensors.topics import is_valid_sensor_id

_OTHER = re.compile(r"[^a-z0-9_-]")


class SensorIdError(ValueError):
    pass


def map_sensor_id(external: str) -> str:
    """The catalogue id for a utility's id (see the module's rule)."""
    raw = str(external).strip()
    if is_valid_sensor_id(raw):
        return raw
    mapped = _OTHER.sub("-", raw.lower()).lstrip("-_")[:64]
    if not is_valid_sensor_id(mapped):
        raise SensorIdError(f"sensor id {external!r} has no letter or digit to keep")
    return mapped


def map_sensor_ids(externals: Iterable[str]) -> dict[str, str]:
    """{utility's id: catalogue id} for a whole file; a collision is an error naming both."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for ext in externals:
        key = str(ext).strip()
        if key in out:
            raise SensorIdError(f"duplicate sensor_id {key!r}")
        mapped = map_sensor_id(key)
        if mapped in seen:
            raise SensorIdError(
                f"sensor ids {seen[mapped]!r} and {key!r} both map to {mapped!r}: rename one"
            )
        seen[mapped] = key
        out[key] = mapped
    return out
