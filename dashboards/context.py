"""What every page's callbacks share: settings, the database reader, a small cache, the clock,
and who is asking. Built once per app by ``dashboards.app.build_app``; never a global."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from cityops.kernel.settings import Settings
from dashboards import queries
from dashboards.model import District
from dashboards.queries import Reader
from dashboards.snapshot import SensorStates, district_summaries

T = TypeVar("T")


class TtlCache:
    """Values that change rarely (district outlines, rollup availability), kept ``ttl_s`` [s]."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, ttl_s: float, make: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < ttl_s:
            return hit[1]  # type: ignore[no-any-return]
        value = make()
        with self._lock:
            self._items[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class AppContext:
    settings: Settings
    reader: Reader  # read-only connections for the pages
    writer: Reader  # sessions, logins and alert actions
    cache: TtlCache = field(default_factory=TtlCache)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # the signed-in user of the current request, or None (set by access.auth wiring)
    current_user: Callable[[], Any] = field(default=lambda: None)
    # single sign-on (dashboards.oidc.OidcClient) when CITYOPS_OIDC_ISSUER is set
    oidc: Any = None
    # CITYOPS_TRUSTED_PROXIES, parsed (dashboards.security.parse_trusted_proxies)
    proxies: tuple[Any, ...] = ()

    @property
    def tz(self) -> str:
        return self.settings.timezone

    def lang(self, chosen: str | None) -> str:
        """The language of a callback's answer: the browser's choice, else the configured one."""
        return chosen or self.settings.language


STATES_TTL_S = 2.0  # one sensor-state snapshot serves every page and client for this long
DISTRICTS_TTL_S = 600  # outlines change only when the districts layer is loaded again


@dataclass(frozen=True)
class City:
    districts: list
    summaries: list
    states: SensorStates
    alerts_by_utility: dict


def read_districts(ctx: AppContext, conn: Any) -> list[District]:
    """The district outlines for the maps, shared by every page for ``DISTRICTS_TTL_S``."""
    return ctx.cache.get("districts", DISTRICTS_TTL_S, lambda: queries.fetch_districts(conn))


def read_city(ctx: AppContext, conn: Any, *, max_age_s: float = STATES_TTL_S) -> City:
    """Districts, the shared sensor-state snapshot (at most ``max_age_s`` [s] old) and the
    open-alert counts (always fresh), on one connection."""
    districts = read_districts(ctx, conn)
    states = ctx.cache.get("states", max_age_s, lambda: queries.fetch_sensor_states(conn))
    by_district, by_utility = queries.fetch_alert_stats(conn)
    return City(
        districts=districts,
        summaries=district_summaries(states, districts, by_district),
        states=states,
        alerts_by_utility=by_utility,
    )
