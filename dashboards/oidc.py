"""OpenID Connect single sign-on for the operations center (the city's identity provider).

Authorization code flow with PKCE (S256), ``state`` and ``nonce`` (OpenID Connect Core 1.0,
RFC 7636): the provider's endpoints come from its discovery document, the ``id_token`` is
checked against the provider's JWKS with PyJWT (asymmetric algorithms only, issuer, audience,
expiry, nonce), and the role comes from a configurable claim (decision 0044). A successful
login opens the same session as a local password login (access/accounts.py); local
accounts keep working next to it.

Pure parts (configuration, URLs, token checks, role mapping) take values and return values;
``OidcClient`` adds the HTTP calls to the provider and a small in-process store of pending
logins (state, nonce and PKCE verifier, 10 minutes, one use each).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from access.auth import ROLES, SSO_PREFIX

# asymmetric signatures only: "none" and the HMAC family (which a client could be tricked into
# checking with the provider's public key as the secret) are never accepted
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
PENDING_TTL_S = 600.0  # a login started must come back within 10 minutes
PENDING_MAX = 10_000  # pending logins kept at most (oldest dropped first)
METADATA_TTL_S = 3600.0  # discovery document and JWKS are fetched again after an hour
JWKS_REFRESH_MIN_S = 60.0  # an unknown key id refetches the JWKS at most once a minute
HTTP_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1024 * 1024
LEEWAY_S = 60  # clock skew tolerated on exp / iat / nbf [s]
_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")


class OidcError(Exception):
    """A single sign-on that cannot go on; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = ""
    redirect_url: str = ""  # empty: <the dashboard as the browser reached it>/oidc/callback
    scopes: str = "openid profile"
    role_claim: str = "cityops_role"  # a claim name, or a dotted path (realm_access.roles)
    role_map: tuple[tuple[str, str], ...] = ()  # (claim value, role); empty: role names as is
    default_role: str = ""  # for a user whose claim maps to no role; empty: refused
    username_claim: str = "preferred_username"

    @classmethod
    def from_settings(cls, settings: Any) -> OidcConfig | None:
        """The configuration from ``CITYOPS_OIDC_*`` settings, None when no issuer is set;
        ValueError with the reason when it is incomplete or unsafe."""
        issuer = (settings.oidc_issuer or "").strip().rstrip("/")
        if not issuer:
            return None
        check_url(issuer, "CITYOPS_OIDC_ISSUER")
        if not settings.oidc_client_id:
            raise ValueError("CITYOPS_OIDC_CLIENT_ID is needed with CITYOPS_OIDC_ISSUER")
        if settings.oidc_redirect_url:
            check_url(settings.oidc_redirect_url, "CITYOPS_OIDC_REDIRECT_URL")
        if "openid" not in settings.oidc_scopes.split():
            raise ValueError("CITYOPS_OIDC_SCOPES must include openid")
        if settings.oidc_default_role and settings.oidc_default_role not in ROLES:
            raise ValueError(
                f"CITYOPS_OIDC_DEFAULT_ROLE must be one of {', '.join(ROLES)} or empty"
            )
        if not settings.oidc_role_claim.strip():
            raise ValueError("CITYOPS_OIDC_ROLE_CLAIM must name a claim")
        return cls(
            issuer=issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            redirect_url=settings.oidc_redirect_url,
            scopes=settings.oidc_scopes,
            role_claim=settings.oidc_role_claim.strip(),
            role_map=parse_role_map(settings.oidc_role_map),
            default_role=settings.oidc_default_role,
            username_claim=settings.oidc_username_claim.strip() or "preferred_username",
        )


def parse_role_map(text: str) -> tuple[tuple[str, str], ...]:
    """``value=role,value=role`` (e.g. ``ops-admins=admin,ops-duty=emergency``)."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        value, sep, role = item.rpartition("=")
        value, role = value.strip(), role.strip()
        if not sep or not value or role not in ROLES:
            raise ValueError(
                f"CITYOPS_OIDC_ROLE_MAP: {item.strip()!r} is not value=role"
                f" (role one of {', '.join(ROLES)})"
            )
        pairs.append((value, role))
    return tuple(pairs)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """https, or http to this machine only (tokens never cross a network in clear text)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"{what} must be an https:// URL (http:// only to this machine): {url!r}")


# -- provider metadata ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    token_auth: str  # client_secret_basic, client_secret_post or none
    end_session_endpoint: str = ""  # RP-initiated logout, when the provider offers it


def parse_discovery(doc: Mapping[str, Any], issuer: str, *, has_secret: bool) -> Provider:
    """The endpoints of a discovery document, checked: its issuer must be the configured one
    (OpenID Connect Discovery 4.3), endpoints https (or loopback http), a usable algorithm."""
    if not isinstance(doc, Mapping):
        raise OidcError("bad_discovery", "not a JSON object")
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise OidcError("bad_discovery", f"issuer {doc.get('issuer')!r} is not {issuer!r}")
    urls = {}
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(key)
        if not isinstance(value, str):
            raise OidcError("bad_discovery", f"no {key}")
        try:
            urls[key] = check_url(value, key)
        except ValueError as exc:
            raise OidcError("bad_discovery", str(exc)) from None
    end_session = doc.get("end_session_endpoint")
    if end_session is not None:
        try:
            end_session = check_url(str(end_session), "end_session_endpoint")
        except ValueError as exc:
            raise OidcError("bad_discovery", str(exc)) from None
    offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in SIGNING_ALGORITHMS if a in offered)
    if not algorithms:
        raise OidcError("bad_discovery", f"no supported id_token algorithm in {offered!r}")
    methods = doc.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise OidcError("bad_discovery", "the provider does not offer PKCE with S256")
    auth_methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if not has_secret:
        token_auth = "none"
    elif "client_secret_basic" in auth_methods:
        token_auth = "client_secret_basic"
    elif "client_secret_post" in auth_methods:
        token_auth = "client_secret_post"
    else:
        raise OidcError("bad_discovery", f"no client secret method in {auth_methods!r}")
    return Provider(
        issuer=issuer,
        authorization_endpoint=urls["authorization_endpoint"],
        token_endpoint=urls["token_endpoint"],
        jwks_uri=urls["jwks_uri"],
        algorithms=algorithms,
        token_auth=token_auth,
        end_session_endpoint=end_session or "",
    )


def logout_url(provider: Provider, config: OidcConfig, post_logout_redirect: str) -> str | None:
    """Where to send the browser to end its session at the provider too (OpenID Connect
    RP-Initiated Logout 1.0: ``client_id`` and ``post_logout_redirect_uri``), or None when the
    discovery document names no ``end_session_endpoint``."""
    if not provider.end_session_endpoint:
        return None
    query = urllib.parse.urlencode(
        {"client_id": config.client_id, "post_logout_redirect_uri": post_logout_redirect}
    )
    sep = "&" if "?" in provider.end_session_endpoint else "?"
    return f"{provider.end_session_endpoint}{sep}{query}"


# -- the flow ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PendingLogin:
    state: str
    nonce: str
    verifier: str  # PKCE code verifier (RFC 7636: 43-128 characters)
    redirect_url: str
    lang: str
    created: float = field(default_factory=time.monotonic)
    next_path: str | None = None  # where the user was going (a checked local path)


def new_pending(redirect_url: str, lang: str, next_path: str | None = None) -> PendingLogin:
    return PendingLogin(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
        redirect_url=redirect_url,
        lang=lang,
        next_path=next_path,
    )


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(provider: Provider, config: OidcConfig, pending: PendingLogin) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": pending.redirect_url,
            "scope": config.scopes,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
    )
    sep = "&" if urllib.parse.urlsplit(provider.authorization_endpoint).query else "?"
    return provider.authorization_endpoint + sep + query


class PendingStore:
    """Logins started and not yet back, keyed by the SHA-256 of a random cookie token (the
    browser that started a login is the only one that can finish it); one use each."""

    def __init__(self, ttl_s: float = PENDING_TTL_S, max_items: int = PENDING_MAX) -> None:
        self._ttl_s = ttl_s
        self._max = max_items
        self._lock = threading.Lock()
        self._items: dict[str, PendingLogin] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def put(self, pending: PendingLogin) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, p in self._items.items() if now - p.created > self._ttl_s]:
                del self._items[key]
            while len(self._items) >= self._max:
                del self._items[next(iter(self._items))]  # the oldest (insertion order)
            self._items[self._key(token)] = pending
        return token

    def take(self, token: str | None) -> PendingLogin | None:
        if not token or len(token) > 200:
            return None
        with self._lock:
            pending = self._items.pop(self._key(token), None)
        if pending is None or time.monotonic() - pending.created > self._ttl_s:
            return None
        return pending


def verify_id_token(
    id_token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: tuple[str, ...] = ("RS256",),
) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (a key of ``jwks``), algorithm, issuer,
    audience, expiry and nonce are right; OidcError with the reason otherwise."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise OidcError("bad_token", str(exc)) from None
    alg = header.get("alg")
    if alg not in algorithms or alg not in SIGNING_ALGORITHMS:
        raise OidcError("bad_algorithm", f"id_token signed with {alg!r}")
    key = _signing_key(jwks, header.get("kid"), alg)
    try:
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.InvalidSignatureError:
        raise OidcError("bad_signature") from None
    except jwt.InvalidAudienceError as exc:
        raise OidcError("wrong_audience", str(exc)) from None
    except jwt.InvalidIssuerError as exc:
        raise OidcError("wrong_issuer", str(exc)) from None
    except jwt.ExpiredSignatureError:
        raise OidcError("expired") from None
    except jwt.PyJWTError as exc:
        raise OidcError("bad_token", str(exc)) from None
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
        raise OidcError("wrong_nonce")
    aud = claims["aud"]
    azp = claims.get("azp")
    if (isinstance(aud, list) and len(aud) > 1 and azp is None) or (
        azp is not None and azp != client_id
    ):
        raise OidcError("wrong_audience", f"authorized party {azp!r}")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise OidcError("bad_token", "no subject")
    return claims


class UnknownKey(OidcError):
    def __init__(self, kid: object) -> None:
        super().__init__("unknown_key", f"no key {kid!r} in the provider's JWKS")


def _signing_key(jwks: Mapping[str, Any], kid: object, alg: str) -> jwt.PyJWK:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise OidcError("bad_jwks", "no keys")
    candidates = [
        k
        for k in keys
        if isinstance(k, Mapping)
        and k.get("use", "sig") == "sig"
        and (kid is None or k.get("kid") == kid)
        and k.get("alg", alg) == alg
    ]
    if not candidates or (kid is None and len(candidates) > 1):
        raise UnknownKey(kid)
    try:
        return jwt.PyJWK(dict(candidates[0]), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise OidcError("bad_jwks", str(exc)) from None


def claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The string values at a claim name or dotted path (a string or a list of strings)."""
    value: Any = claims
    if path in claims:
        value = claims[path]
    else:
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def map_role(claims: Mapping[str, Any], config: OidcConfig) -> str | None:
    """The dashboard role of these claims: the most capable role any value of the role claim
    maps to (through the role map, or role names as they are), else the default role."""
    values = claim_values(claims, config.role_claim)
    mapping = dict(config.role_map) if config.role_map else {r: r for r in ROLES}
    roles = {mapping[v] for v in values if v in mapping}
    for role in reversed(ROLES):  # admin, emergency, planner, operator
        if role in roles:
            return role
    return config.default_role or None


def sso_username(claims: Mapping[str, Any], config: OidcConfig) -> str:
    """``sso.<name>`` from the username claim in the accounts' alphabet (a-z 0-9 . _ -); when
    nothing of it is left (a name in Chinese characters), from the subject, else its hash."""

    def clean(value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        return _NAME_CHARS.sub("-", text).strip("-._")

    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise OidcError("bad_token", "no subject")
    name = (
        clean(claims.get(config.username_claim))
        or clean(subject)
        or hashlib.sha256(subject.encode("utf-8")).hexdigest()[:16]
    )
    return (SSO_PREFIX + name)[:64]


def display_name(claims: Mapping[str, Any]) -> str:
    name = claims.get("name") or claims.get("preferred_username") or ""
    return str(name)[:100]


# -- HTTP -------------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The provider's URLs are checked (https); a redirect could lead anywhere: not followed."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def fetch_json(
    url: str,
    *,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = HTTP_TIMEOUT_S,
) -> Any:
    """GET (or POST ``form``) ``url`` and decode its JSON answer; OidcError when it fails."""
    data = urllib.parse.urlencode(form).encode("ascii") if form is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Accept": "application/json", **(headers or {})}
    )
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            body = resp.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        raise OidcError("provider_refused", f"{exc.code} from {url}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise OidcError("provider_unreachable", f"{url}: {exc}") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise OidcError("provider_refused", f"answer from {url} is too large")
    try:
        return json.loads(body)
    except ValueError:
        raise OidcError("provider_refused", f"answer from {url} is not JSON") from None


class OidcClient:
    """The relying party: starts logins and finishes them (one per dashboard process)."""

    def __init__(self, config: OidcConfig, *, fetch: Callable[..., Any] = fetch_json) -> None:
        self.config = config
        self.pending = PendingStore()
        self._fetch = fetch
        self._lock = threading.Lock()
        self._provider: tuple[float, Provider] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    def provider(self) -> Provider:
        now = time.monotonic()
        with self._lock:
            cached = self._provider
        if cached is not None and now - cached[0] < METADATA_TTL_S:
            return cached[1]
        doc = self._fetch(self.config.issuer + "/.well-known/openid-configuration")
        provider = parse_discovery(
            doc, self.config.issuer, has_secret=bool(self.config.client_secret)
        )
        with self._lock:
            self._provider = (now, provider)
        return provider

    def jwks(self, *, refresh: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._jwks
        if cached is not None:
            age = now - cached[0]
            if age < (JWKS_REFRESH_MIN_S if refresh else METADATA_TTL_S):
                return cached[1]
        keys = self._fetch(self.provider().jwks_uri)
        if not isinstance(keys, dict):
            raise OidcError("bad_jwks", "not a JSON object")
        with self._lock:
            self._jwks = (now, keys)
        return keys

    def begin(self, redirect_url: str, lang: str, next_path: str | None = None) -> tuple[str, str]:
        """(the provider's authorization URL to send the browser to, the cookie token that
        lets this browser finish the login); ``next_path``, a checked local path, is kept here
        with the pending login (never sent to the provider) and reached after it."""
        provider = self.provider()
        pending = new_pending(self.config.redirect_url or redirect_url, lang, next_path)
        return authorization_url(provider, self.config, pending), self.pending.put(pending)

    def logout_url(self, post_logout_redirect: str) -> str | None:
        """The provider's logout address for this browser, or None (see ``logout_url``)."""
        return logout_url(self.provider(), self.config, post_logout_redirect)

    def finish(self, pending: PendingLogin, args: Mapping[str, str]) -> dict[str, Any]:
        """The verified id_token claims for the provider's answer ``args`` (code and state)
        to the login ``pending``; OidcError otherwise."""
        if args.get("error"):
            raise OidcError("provider_error", str(args.get("error"))[:100])
        state = args.get("state") or ""
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("wrong_state")
        code = args.get("code") or ""
        if not code or len(code) > 2000:
            raise OidcError("no_code")
        provider = self.provider()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_url,
            "code_verifier": pending.verifier,
        }
        headers = {}
        if provider.token_auth == "client_secret_basic":
            quote = urllib.parse.quote  # RFC 6749 2.3.1: form-encoded, then Basic
            pair = f"{quote(self.config.client_id, safe='')}:{quote(self.config.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.config.client_id
            if provider.token_auth == "client_secret_post":
                form["client_secret"] = self.config.client_secret
        answer = self._fetch(provider.token_endpoint, form=form, headers=headers)
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str):
            raise OidcError("no_id_token")
        check = {
            "issuer": provider.issuer,
            "client_id": self.config.client_id,
            "nonce": pending.nonce,
            "algorithms": provider.algorithms,
        }
        try:
            return verify_id_token(id_token, self.jwks(), **check)
        except UnknownKey:  # the provider may have rotated its keys since we fetched them
            return verify_id_token(id_token, self.jwks(refresh=True), **check)
