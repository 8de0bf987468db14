"""The data dictionary's reads (adapter): the tables' CHECK constraints as rules, the layers'
data class and source, and the check a layer write goes through (``gis.postgis.write_layers``).
The dictionary itself, and every rule's meaning, is the pure ``gis.dictionary``."""

from __future__ import annotations

from typing import Any

import psycopg

from gis.dictionary import Rule, RuleError, build_dictionary, check_frame, parse_check
from gis.layers import LAYERS, Layer


def fetch_rules(conn: psycopg.Connection, tables: list[str]) -> dict[str, dict[str, Rule]]:
    """Table -> column -> rule, from the tables' one-column CHECK constraints, in one query."""
    rows = conn.execute(
        "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) t)"
        " AND c.contype = 'c' ORDER BY c.conname",
        (tables,),
    ).fetchall()
    rules: dict[str, dict[str, Rule]] = {t: {} for t in tables}
    for table, definition in rows:
        parsed = parse_check(definition)
        if parsed and table in rules:
            rules[table][parsed[0]] = parsed[1]
    return rules


def fetch_dictionary(conn: psycopg.Connection) -> dict[str, Any]:
    """The whole dictionary, as the database enforces it now."""
    meta = {
        r[0]: {"classification": r[1], "source": r[2], "licence": r[3]}
        for r in conn.execute("SELECT name, classification, source, licence FROM gis_layers")
    }
    return build_dictionary(fetch_rules(conn, [x.table for x in LAYERS.values()]), meta)


def enforce(conn: psycopg.Connection, layer: Layer, frame: Any) -> None:
    """Refuse a prepared layer frame (a GeoDataFrame) whose rows break the table's rules, with
    every broken rule named (``RuleError``), before anything is written."""
    records = frame.drop(columns=frame.geometry.name).to_dict("records")
    problems = check_frame(layer, records, fetch_rules(conn, [layer.table])[layer.table])
    if problems:
        raise RuleError("; ".join(problems))
