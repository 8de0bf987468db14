"""Settings from the environment (docs/contracts/settings.md).

Built in each entry point and passed down; nothing reads the environment at import time, so a
test builds ``Settings(database_url=..., mqtt_url=...)`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_", extra="ignore")

    database_url: str = Field("", description="postgresql://user:password@host:port/dbname")
    mqtt_url: str = Field("", description="mqtt://user:password@host:port")

    # ingestion
    ingest_client_id: str = "cityops-ingest-1"
    ingest_share_group: str = "cityops-ingest"
    ingest_batch_max: int = 5000  # readings per database transaction
    ingest_batch_age_ms: int = 10  # flush a partial batch this long after its first message
    ingest_queue_max: int = 50_000  # messages received but not yet committed (bounded memory)
    accept_past_s: float = 30 * 86_400.0  # readings older than this are rejected (ts_past)
    accept_future_s: float = 300.0  # clock skew tolerated (ts_future beyond it)
    retention_days: int = 400
    metrics_port: int = 0  # 0: no Prometheus endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so that Prometheus can scrape it

    # alerts
    alerts_client_id: str = "cityops-alerts-1"
    alerts_share_group: str = "cityops-alerts"

    # simulators: the living demo's incidents (`cityops up`; docs/simulators.md): 0 or off for
    # none (production), 1 or on for one every 4 minutes, or an interval such as 3m
    demo_incidents: str = "4m"

    # dashboard
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8050
    dashboard_refresh_ms: int = 5000
    language: str = "zh"  # zh | en
    timezone: str = "Asia/Shanghai"

    # dashboard single sign-on with the city's OpenID Connect provider (docs/dashboards.md,
    # decision 0044); an empty issuer turns it off, local accounts work either way
    oidc_issuer: str = ""  # https://sso.example.gov.cn/realms/city (discovery is read from it)
    oidc_client_id: str = ""
    oidc_client_secret: str = ""  # empty: a public client (PKCE only)
    oidc_redirect_url: str = ""  # empty: <dashboard URL as the browser sees it>/oidc/callback
    oidc_scopes: str = "openid profile"
    oidc_role_claim: str = "cityops_role"  # claim name or dotted path, e.g. realm_access.roles
    oidc_role_map: str = ""  # value=role,... (empty: the claim holds role names)
    oidc_default_role: str = ""  # role for a user the claim gives none (empty: refused)
    oidc_username_claim: str = "preferred_username"

    # security (issue 14; docs/security.md)
    trusted_proxies: str = ""  # comma-separated IPs whose X-Forwarded-For/-Proto are believed
    keys_dir: str = ""  # SM2 signing key and SM4 data key (0600); empty: <stack dir>/keys
    device_ca_dir: str = ""  # the CA that issues devices' client certificates (cityops devices)

    # per-service broker identities; each defaults to mqtt_url (docs/contracts/settings.md)
    ingest_mqtt_url: str = ""
    alerts_mqtt_url: str = ""
    sim_mqtt_url: str = ""

    def as_environment(self) -> dict[str, str]:
        """The ``CITYOPS_*`` variables that give a child process (``cityops alerts``, a test's
        subprocess) exactly these settings."""
        return {f"CITYOPS_{key.upper()}": str(value) for key, value in self.model_dump().items()}

    def mqtt_url_for(self, service: str) -> str:
        """The broker URL of one service (ingest, alerts, sim), falling back to mqtt_url."""
        specific = {
            "ingest": self.ingest_mqtt_url,
            "alerts": self.alerts_mqtt_url,
            "sim": self.sim_mqtt_url,
        }[service]
        return specific or self.mqtt_url


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """mqtt://user:password@host:port (or mqtts:// for TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"CITYOPS_MQTT_URL must start with mqtt:// or mqtts://, got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return MqttEndpoint(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def with_mqtt_credentials(url: str, username: str, password: str) -> str:
    """The same broker as ``url`` with another identity (each service has its own)."""
    ep = parse_mqtt_url(url)
    from urllib.parse import quote

    scheme = "mqtts" if ep.tls else "mqtt"
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{ep.host}:{ep.port}"
