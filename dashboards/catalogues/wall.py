"""Messages of the wall screens (merged into dashboards.i18n.MESSAGES)."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {},
    "en": {},
}
