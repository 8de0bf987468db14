"""The dashboard's doors, as pure rules: security headers, who the client is behind a trusted
proxy, whether a request comes from our own pages (Origin), and what each callback needs.

No Flask here (``dashboards/guard.py`` applies these to every request). Decision 0045.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

ProxyNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def build_csp(script_hashes: Iterable[str] = (), form_targets: Iterable[str] = ()) -> str:
    """A Content-Security-Policy that allows this server only.

    Dash's renderer needs ``'unsafe-eval'`` (Plotly's WebGL traces compile code at run time);
    inline scripts are allowed by hash, not wholesale. Plotly and Dash set inline styles, so
    styles keep ``'unsafe-inline'``. Fonts come from the viewer's system (no web fonts).
    ``form_targets``: other origins a form may lead to (the single sign-on provider, where
    logging out continues: form-action also holds for the redirect after a form's POST).
    """
    hashes = (h if h.startswith("'") else f"'{h}'" for h in script_hashes)
    scripts = " ".join(["'self'", "'unsafe-eval'", *hashes])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            " ".join(["form-action 'self'", *form_targets]),
            "frame-ancestors 'none'",
        ]
    )


def security_headers(csp: str) -> dict[str, str]:
    """Headers for every response. ``Referrer-Policy: same-origin``: our own forms and fetches
    carry our origin (a form posted under ``no-referrer`` says ``Origin: null``, which the
    forgery check could not tell from another site), other sites learn nothing."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


# -- the client behind a proxy ------------------------------------------------------------------
def parse_trusted_proxies(text: str) -> tuple[ProxyNet, ...]:
    """``CITYOPS_TRUSTED_PROXIES``: comma-separated addresses (or networks, ``10.0.0.0/24``);
    ValueError for anything else."""
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"CITYOPS_TRUSTED_PROXIES: {part!r} is not an IP address"
                ) from None
    return tuple(nets)


def is_trusted(address: str, proxies: Sequence[ProxyNet]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def _header_values(values: Iterable[str]) -> list[str]:
    """The comma-separated items of a header that may have been sent several times."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def client_address(peer: str, forwarded_for: Iterable[str], proxies: Sequence[ProxyNet]) -> str:
    """Who is asking: the socket peer, unless the peer is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy (the left part of the header is
    whatever the client wrote, only what our proxies appended can be believed)."""
    if not is_trusted(peer, proxies):
        return peer
    for entry in reversed(_header_values(forwarded_for)):
        try:
            address = str(ipaddress.ip_address(entry))
        except ValueError:
            return peer  # not what a proxy of ours writes: believe nothing further left
        if not is_trusted(address, proxies):
            return address
    return peer


def forwarded_value(peer: str, values: Iterable[str], proxies: Sequence[ProxyNet]) -> str | None:
    """The right-most value of a forwarded header (``X-Forwarded-Proto``/``-Host``), believed
    only from a trusted proxy."""
    if not is_trusted(peer, proxies):
        return None
    items = _header_values(values)
    return items[-1].lower() if items else None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` ("" when it has none)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str) -> str | None:
    """None when the request comes from a page of ours (``Origin``, or ``Referer`` when the
    browser sent no Origin) at ``scheme://host``; otherwise why not: ``no_origin`` or
    ``cross_origin``."""
    claimed = origin if origin and origin != "null" else referer
    if not claimed:
        return "no_origin"
    ours = _origin_of(f"{scheme}://{host}")
    theirs = _origin_of(claimed)
    if ours is None or theirs is None or theirs != ours:
        return "cross_origin"
    return None


# -- what each callback needs -------------------------------------------------------------------
PUBLIC = "public"  # anyone who can reach the server (the read-only pages: decision 0040)
SIGNED_IN = "signed_in"  # any role


@dataclass(frozen=True, slots=True)
class Access:
    """What calling a callback needs: ``PUBLIC``, ``SIGNED_IN`` or a permission of
    ``access.auth.PERMISSIONS``; with ``triggers``, only when one of those inputs
    ("id.prop") fired it (the same ``changedPropIds`` the callback itself reads as
    ``dash.ctx.triggered_id``), so a page can draw its empty form for anyone and answer only
    those allowed."""

    need: str = PUBLIC
    triggers: tuple[str, ...] = ()

    def applies(self, changed: Sequence[str]) -> bool:
        return not self.triggers or any(c in self.triggers for c in changed)


def output_ids(output: str) -> list[str]:
    """The component ids a callback writes, from Dash's output spec
    (``id.prop`` or ``..a.prop...b.prop..``; pattern-matching ids are JSON)."""
    parts = output.strip(".").split("...") if output.startswith("..") else [output]
    return [p.rsplit(".", 1)[0] for p in parts if "." in p]


def callback_access(
    output: str, page_default: Access, declared: Mapping[str, Access] | None = None
) -> Access:
    """The access of the callback that writes ``output`` on a page whose callbacks need
    ``page_default`` unless ``declared`` (component id -> Access) says otherwise for one of
    its outputs."""
    for component in output_ids(output):
        if declared and component in declared:
            return declared[component]
    return page_default


def refusal(access: Access | None, changed: Sequence[str], user_role: str | None, can) -> int:
    """0 if the call may go on, else the HTTP status refusing it: 403 for a callback nobody
    declared (deny by default) or a role without the permission, 401 for nobody signed in.
    ``can(role, permission)`` is ``access.auth``'s rule."""
    if access is None:
        return 403
    if access.need == PUBLIC or not access.applies(changed):
        return 0
    if user_role is None:
        return 401
    if access.need == SIGNED_IN or can(user_role, access.need):
        return 0
    return 403
