"""HTTP security headers for every dashboard response (pure: builds the header values)."""

from __future__ import annotations

from collections.abc import Iterable


def build_csp(script_hashes: Iterable[str] = ()) -> str:
    """A Content-Security-Policy that allows this server only.

    Dash's renderer needs ``'unsafe-eval'`` (Plotly's WebGL traces compile code at run time);
    inline scripts are allowed by hash, not wholesale. Plotly and Dash set inline styles, so
    styles keep ``'unsafe-inline'``. Fonts come from the viewer's system (no web fonts).
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
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
