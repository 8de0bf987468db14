"""Data classes and who may see them (pure; docs/decisions/0071-api-tokens-and-data-classes.md).

Three classes, ordered: ``public`` (may go to open data: district boundaries, the H3 grid)
< ``internal`` (networks, sensors, alert locations: for city staff) < ``restricted`` (critical
facilities, valve plans and isolation answers: what an attacker would use to pick a target).
Each role reads up to one class. There is no anonymous reader: even public data needs a login
or a token on cityops' HTTP surfaces; "public" only says what may be published elsewhere.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

CLASSES = ("public", "internal", "restricted")
_RANK = {c: i for i, c in enumerate(CLASSES)}

# the highest class each role reads; operators and planners work with the networks, emergency
# staff and admins also need the facilities and valve plans to act on an incident
ROLE_CLASS: Mapping[str, str] = {
    "operator": "internal",
    "planner": "internal",
    "emergency": "restricted",
    "admin": "restricted",
}

# permissions a token's role carries beyond reading (access.auth.PERMISSIONS, repeated here as
# the set a token role must not exceed; admin is never granted to a token of a non-admin)
_ROLE_POWERS: Mapping[str, frozenset[str]] = {
    "operator": frozenset(),
    "planner": frozenset({"planner.query"}),
    "emergency": frozenset({"alert.act"}),
    "admin": frozenset({"planner.query", "alert.act", "users.manage"}),
}


class ClassError(ValueError):
    """An unknown class or role."""


def check_class(name: str) -> str:
    if name not in _RANK:
        raise ClassError(f"unknown data class {name!r}; one of {', '.join(CLASSES)}")
    return name


def class_rank(name: str) -> int:
    return _RANK[check_class(name)]


def role_class(role: str) -> str:
    """The highest class ``role`` may read."""
    try:
        return ROLE_CLASS[role]
    except KeyError:
        raise ClassError(f"unknown role {role!r}; one of {', '.join(ROLE_CLASS)}") from None


def classes_for(role: str) -> tuple[str, ...]:
    """Every class ``role`` may read, lowest first."""
    return CLASSES[: class_rank(role_class(role)) + 1]


def role_within(role: str, owner_role: str) -> bool:
    """Whether a token of ``role`` gives no more than its owner's ``owner_role``: the same role,
    or one that reads no higher class and carries no permission the owner lacks."""
    if role not in ROLE_CLASS or owner_role not in ROLE_CLASS:
        return False
    if role == owner_role:
        return True
    return (
        class_rank(role_class(role)) <= class_rank(role_class(owner_role))
        and _ROLE_POWERS[role] <= _ROLE_POWERS[owner_role]
    )


def may_read(role: str, scope: Collection[str], layer: str, layer_class: str | None) -> bool:
    """Whether a principal of ``role`` whose token is limited to ``scope`` (empty: no limit)
    may read ``layer`` of ``layer_class``. A layer of unknown class is restricted; a role this
    module does not know reads nothing."""
    if (scope and layer not in scope) or role not in ROLE_CLASS:
        return False
    cls = layer_class if layer_class in _RANK else "restricted"
    return class_rank(cls) <= class_rank(role_class(role))


def visible_layers(
    role: str, scope: Collection[str], layer_classes: Mapping[str, str]
) -> list[str]:
    """The names in ``layer_classes`` (layer -> class) that the principal may see, sorted."""
    return sorted(n for n, c in layer_classes.items() if may_read(role, scope, n, c))


def highest_class(classes: Iterable[str]) -> str:
    """The most sensitive of ``classes`` (public when empty): the class of a combined answer."""
    return max(classes, key=class_rank, default="public")
