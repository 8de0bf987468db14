"""The onset of a test's incident at a fixed time of day.

The models follow the clock (Net3's pumps and tanks, a feeder's loads), and so do the answers
the localisation gives: an onset of "now minus two hours" made the answers depend on the hour
the suite ran (three localisation tests failed with an onset at 18:xx UTC and passed at 17:xx).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

ONSET_HOUR_UTC = 17


def fixed_hour_onset(hour_utc: int = ONSET_HOUR_UTC, *, at_least_ago_h: float = 2.0) -> datetime:
    """The newest ``hour_utc``:00 at least ``at_least_ago_h`` hours ago (the readings the test
    writes after the onset must be in the past)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    at = now.replace(hour=hour_utc, minute=0)
    return at if at <= now - timedelta(hours=at_least_ago_h) else at - timedelta(days=1)
