"""Data classes and roles (pure): who reads which layer, and what a token's role may be."""

from __future__ import annotations

import pytest

from access.classes import (
    CLASSES,
    ClassError,
    classes_for,
    highest_class,
    may_read,
    role_class,
    role_within,
    visible_layers,
)

LAYER_CLASSES = {
    "districts": "public",
    "grid_cells": "public",
    "water_pipes": "internal",
    "sensors": "internal",
    "alert_locations": "internal",
    "facilities": "restricted",
}


def test_classes_are_ordered_and_each_role_has_a_ceiling() -> None:
    assert CLASSES == ("public", "internal", "restricted")
    assert role_class("operator") == role_class("planner") == "internal"
    assert role_class("emergency") == role_class("admin") == "restricted"
    assert classes_for("planner") == ("public", "internal")
    assert classes_for("admin") == CLASSES
    with pytest.raises(ClassError):
        role_class("guest")  # there is no anonymous or unknown reader


def test_may_read_by_class_and_token_scope() -> None:
    assert may_read("planner", (), "water_pipes", "internal")
    assert may_read("planner", (), "districts", "public")
    assert not may_read("planner", (), "facilities", "restricted")
    assert may_read("emergency", (), "facilities", "restricted")
    # a layer of unknown class counts as restricted
    assert not may_read("operator", (), "new_layer", None)
    assert not may_read("operator", (), "new_layer", "top-secret")
    assert may_read("admin", (), "new_layer", None)
    # a token's scope narrows, never widens
    assert may_read("admin", ("water_pipes",), "water_pipes", "internal")
    assert not may_read("admin", ("water_pipes",), "districts", "public")
    assert not may_read("planner", ("facilities",), "facilities", "restricted")
    assert not may_read("auditor", (), "districts", "public")  # a role without a class


def test_visible_layers_leave_out_what_a_role_cannot_read() -> None:
    assert "facilities" not in visible_layers("planner", (), LAYER_CLASSES)
    assert visible_layers("emergency", (), LAYER_CLASSES) == sorted(LAYER_CLASSES)
    assert visible_layers("admin", ("sensors", "districts"), LAYER_CLASSES) == [
        "districts",
        "sensors",
    ]


def test_a_combined_answer_takes_its_most_sensitive_class() -> None:
    assert highest_class(["public", "internal"]) == "internal"
    assert highest_class(["internal", "restricted", "public"]) == "restricted"
    assert highest_class([]) == "public"


@pytest.mark.parametrize(
    ("role", "owner", "ok"),
    [
        ("planner", "planner", True),
        ("operator", "planner", True),  # less: reads the same, may do less
        ("operator", "emergency", True),
        ("planner", "emergency", False),  # planner.query is not emergency's
        ("emergency", "planner", False),  # reads restricted
        ("admin", "emergency", False),
        ("emergency", "admin", True),
        ("planner", "admin", True),
        ("admin", "admin", True),
        ("guest", "admin", False),
        ("operator", "guest", False),
    ],
)
def test_a_token_role_is_at_most_its_owner_role(role: str, owner: str, ok: bool) -> None:
    assert role_within(role, owner) is ok


def test_a_principal_of_a_role_without_a_class_reads_nothing() -> None:
    from access.http import AccessDenied, Principal, require

    p = Principal("x", "auditor")
    assert p.classes == () and p.max_class == "nothing"
    with pytest.raises(AccessDenied) as exc:
        require(p, [("districts", "public")])
    assert exc.value.status == 403
    require(Principal("y", "planner"), [("districts", "public"), ("water_pipes", "internal")])
