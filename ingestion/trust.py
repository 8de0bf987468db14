"""The data-trust figures: one definition, in the database (migration 0073 ``data_trust``).

Per active sensor and quantity of its type, over a window [since, until) (decision 0016):

* **expected**: readings due at the sensor type's declared interval
  (``sensor_types.expected_interval_s``) from the later of ``since`` and the sensor's
  beginning (its registration, or its first reading in the window if that is earlier: history
  loaded for a sensor registered afterwards): ``floor((until - start) / interval)``;
* **received**: readings stored with a timestamp in the window (live or history);
* **late**: readings that arrived more than one interval after their timestamp, except
  backfilled history;
* **backfilled**: readings loaded as history, flagged ``QUALITY_HISTORY`` in
  ``readings.quality`` by whoever loads them (``cityops readings import``): they are complete
  data, not late deliveries;
* **completeness**: ``min(received, expected) / expected`` per sensor and quantity; for a group
  (a utility, a district, the city) ``sum(min(received, expected)) / sum(expected)`` (the column
  ``counted`` is the numerator), so a sensor sending twice too much hides no silent one.

The wall, the data-trust page and the sensor page read these through ``data_trust`` only
(dashboards/queries.py ``fetch_trust_by_group``), over the same window (the last 60 minutes).
"""

from __future__ import annotations

QUALITY_HISTORY = 2  # readings.quality bit: loaded as history, never counted as late
TRUST_WINDOW_S = 3600  # the window the wall and the trust page show ("last hour")


def group_completeness(counted: int | None, expected: int | None) -> float | None:
    """A group's completeness from ``data_trust``'s sums (None: nothing was expected)."""
    if not expected:
        return None
    return min(1.0, (counted or 0) / expected)
