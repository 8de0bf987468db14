"""A small but real OpenID Connect provider for the single sign-on tests: an HTTP server on
127.0.0.1 with a discovery document, an authorization endpoint that signs the configured user
in at once (no login form), a token endpoint (client secret, PKCE S256, one-use codes, exact
redirect URI) and a JWKS; id_tokens are RS256-signed with its own key. ``tamper`` makes it send
a defective id_token (a relying party must refuse each one)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

TAMPERS = (
    "bad_signature",  # signed by another key, under the provider's key id
    "wrong_nonce",
    "wrong_audience",
    "wrong_issuer",
    "expired",
    "alg_none",  # unsigned
    "alg_hs256",  # HMAC with the provider's public key as the secret
    "azp_other",  # two audiences, authorized party another client
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    claims: dict[str, Any]
    tamper: str | None


@dataclass
class LocalProvider:
    host: str = "localhost"  # another site than the dashboard on 127.0.0.1
    clients: dict[str, str] = field(default_factory=dict)  # client id -> secret
    redirect_uris: set[str] = field(default_factory=set)
    user: dict[str, Any] = field(default_factory=dict)  # claims of whoever signs in next
    tamper: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)  # authorization requests
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    logouts: list[dict[str, Any]] = field(default_factory=list)  # end_session requests

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.issuer = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LocalProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- documents ------------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "end_session_endpoint": self.issuer + "/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
        }
        tamper = grant.tamper
        if tamper == "wrong_nonce":
            claims["nonce"] = secrets.token_urlsafe(16)
        elif tamper == "wrong_audience":
            claims["aud"] = "another-client"
        elif tamper == "wrong_issuer":
            claims["iss"] = "http://localhost:1/evil"
        elif tamper == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 600
        elif tamper == "azp_other":
            claims["aud"], claims["azp"] = [grant.client_id, "another-client"], "another-client"
        if tamper in ("alg_none", "alg_hs256"):
            alg = "none" if tamper == "alg_none" else "HS256"
            head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": self.kid}).encode())
            body = _b64(json.dumps(claims).encode())
            signature = b""
            if alg == "HS256":
                secret = self.key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64(signature)}"
        key = self.rogue if tamper == "bad_signature" else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    # -- HTTP -----------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                args = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    return self._json(200, provider.discovery())
                if url.path == "/jwks":
                    return self._json(200, provider.jwks())
                if url.path == "/authorize":
                    return self._authorize(args)
                if url.path == "/logout":  # RP-initiated logout: remembered, then back
                    provider.logouts.append(args)
                    self.send_response(302)
                    self.send_header("Location", args.get("post_logout_redirect_uri", "/"))
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                return self._json(404, {"error": "not_found"})

            def _authorize(self, args: dict[str, str]) -> None:
                provider.requests.append(args)
                ok = (
                    args.get("response_type") == "code"
                    and args.get("client_id") in provider.clients
                    and args.get("redirect_uri") in provider.redirect_uris
                    and "openid" in args.get("scope", "").split()
                    and args.get("code_challenge_method") == "S256"
                    and len(args.get("code_challenge", "")) == 43
                    and args.get("state")
                    and args.get("nonce")
                )
                if not ok:
                    return self._json(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(24)
                with provider._lock:
                    provider.grants[code] = Grant(
                        args["client_id"],
                        args["redirect_uri"],
                        args["nonce"],
                        args["code_challenge"],
                        dict(provider.user),
                        provider.tamper,
                    )
                back = urllib.parse.urlencode({"code": code, "state": args["state"]})
                self.send_response(302)
                self.send_header("Location", f"{args['redirect_uri']}?{back}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                if self.path != "/token":
                    return self._json(404, {"error": "not_found"})
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                provider.token_requests.append(form)
                auth = self.headers.get("Authorization", "")
                try:
                    pair = base64.b64decode(auth.removeprefix("Basic ")).decode()
                    client_id, secret = (urllib.parse.unquote(p) for p in pair.split(":", 1))
                except ValueError:
                    return self._json(401, {"error": "invalid_client"})
                if provider.clients.get(client_id) != secret:
                    return self._json(401, {"error": "invalid_client"})
                with provider._lock:
                    grant = provider.grants.pop(form.get("code", ""), None)  # one use
                verifier = form.get("code_verifier", "")
                if (
                    grant is None
                    or form.get("grant_type") != "authorization_code"
                    or grant.client_id != client_id
                    or grant.redirect_uri != form.get("redirect_uri")
                    or _b64(hashlib.sha256(verifier.encode()).digest()) != grant.challenge
                ):
                    return self._json(400, {"error": "invalid_grant"})
                return self._json(
                    200,
                    {
                        "access_token": secrets.token_urlsafe(24),
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant),
                    },
                )

        return Handler
