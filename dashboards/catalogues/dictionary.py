"""The names of layers, fields, coded values and quantities, from the data dictionary's one
definition (``gis/dictionary.py``, ``sensors/quantities.py``)."""

from __future__ import annotations

from gis.dictionary import NAMES
from sensors.quantities import QUANTITY_NAMES

MESSAGES: dict[str, dict[str, str]] = {
    lang: {**NAMES[lang], **{f"quantity.{q}": name for q, name in QUANTITY_NAMES[lang].items()}}
    for lang in ("zh", "en")
}
