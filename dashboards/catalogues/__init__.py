"""Message catalogues by screen, merged into ``dashboards.i18n.MESSAGES``.

Each module holds ``MESSAGES = {"zh": {...}, "en": {...}}`` for one screen or concern, so that
work on one screen does not edit a catalogue shared by all; a key may be defined only once.
"""

from __future__ import annotations

from types import ModuleType

from dashboards.catalogues import console, dictionary, planner, source_loss, wall

PARTS: tuple[ModuleType, ...] = (console, dictionary, planner, source_loss, wall)


def merge_into(messages: dict[str, dict[str, str]]) -> None:
    """Add every part's messages to ``messages``; a key defined twice is a programming error."""
    for part in PARTS:
        for lang, entries in part.MESSAGES.items():
            twice = set(entries) & set(messages[lang])
            if twice:
                raise ValueError(f"{part.__name__}: keys already defined: {sorted(twice)}")
            messages[lang].update(entries)
