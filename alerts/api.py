"""What other parts and the shell may use of alerts: its public interface. They never import
``alerts.stores`` or the engine's internals (an import-linter contract), so alerts'
persistence can change behind these names.

* the alert actions of the operations center (acknowledge, assign, start, shelve, unshelve,
  resolve, close, comment) and their refusal, ``TransitionError``;
* what an asset register or a simulator declares: per-sensor limits and metered areas, and the
  sensors with the limits the engine then uses (``read_sensors``);
* the default detectors, seeded with the schema;
* reads for the shell: dead letters, the detector clock and the evaluation's input;
* the audit chain's description (``AUDIT_CHAIN``, for ``cityops audit verify``) and the
  re-encryption of the notification routes' secrets (``cityops keys reencrypt``);
* the engine itself (``run``).
"""

from __future__ import annotations

from typing import Any

from alerts.lifecycle import TransitionError
from alerts.messages import SEVERITIES
from alerts.stores.actions import (
    acknowledge_alert,
    assign_alert,
    close_alert,
    comment_alert,
    resolve_alert,
    shelve_alert,
    start_alert,
    unshelve_alert,
)
from alerts.stores.areas import (
    AreaWriteError,
    read_metered_area,
    read_metered_area_list,
    write_metered_areas,
)
from alerts.stores.audit import AUDIT_CHAIN
from alerts.stores.catalogue import (
    read_sensors,
    write_default_detectors,
    write_limit_override,
    write_metered_area,
)
from alerts.stores.detector_state import read_detector_clock, read_evaluated_until
from alerts.stores.evaluation_reads import read_evaluation_input
from alerts.stores.notifications import count_route_keys, reencrypt_routes
from alerts.stores.outbox import read_dead_letters
from alerts.stores.retired import clear_alerts_of_retired
from cityops.kernel.settings import Settings

__all__ = [
    "AUDIT_CHAIN",
    "SEVERITIES",
    "AreaWriteError",
    "TransitionError",
    "acknowledge_alert",
    "assign_alert",
    "clear_alerts_of_retired",
    "close_alert",
    "comment_alert",
    "count_route_keys",
    "read_dead_letters",
    "read_detector_clock",
    "read_evaluated_until",
    "read_evaluation_input",
    "read_metered_area",
    "read_metered_area_list",
    "read_sensors",
    "reencrypt_routes",
    "resolve_alert",
    "run",
    "shelve_alert",
    "start_alert",
    "unshelve_alert",
    "write_default_detectors",
    "write_limit_override",
    "write_metered_area",
    "write_metered_areas",
]


def run(settings: Settings, **options: Any) -> None:
    """The streaming alert engine until SIGTERM (``alerts.service.run``); imported when called,
    so that the pages and tools that only act on alerts do not load the engine."""
    from alerts.service import run as run_engine

    run_engine(settings, **options)


# read-only lists for `cityops alerts list` / `cityops incidents list` (issue 15 item 4)
from alerts.stores.listing import ListingError, read_alert_list, read_incident_list  # noqa: E402

__all__ += ["ListingError", "read_alert_list", "read_incident_list"]

# the works calendar for `cityops works` and the simulators' planned operations (issue 15 item 6)
from alerts.stores.works import Work, add_work, cancel_work, list_works  # noqa: E402

__all__ += ["Work", "add_work", "cancel_work", "list_works"]

# a person takes a source loss on (the console's button; decision 0076)
from alerts.stores.source_loss import acknowledge_loss  # noqa: E402

__all__ += ["acknowledge_loss"]
