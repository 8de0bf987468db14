"""PostgreSQL adapters of the alerts part, one module per family of tables (decision 0027).

Table families, each with the only SQL that touches it:

* ``catalogue``: what the engine reads to know the sensors: limits and their per-sensor
  overrides, streaming detector settings, metered areas (and the shared ``sensors`` catalogue);
* ``detector_state``: ``alert_detector_state``, and the stored readings that refill windows;
* ``alert_rows``: ``alerts`` (raise, clear, lifecycle columns, grouping marks) and
  ``maintenance_windows``;
* ``audit``: the append-only, hash-chained ``alert_audit``;
* ``outbox``: ``alert_events`` (what is to be published and routed) and ``alert_dead_letters``;
* ``notifications``: ``notification_routes`` and ``notification_deliveries``;
* ``incidents``: ``incidents`` and ``incident_sensors``;
* ``evaluation_reads``: the read-only join of a simulator run with the incidents it caused.

Three modules compose them into one transaction each and hold no SQL of their own: ``batch``
(an evaluated batch), ``actions`` (staff actions and escalation), ``grouping`` (alerts into
incidents, decided by the pure rules of alerts/incidents.py). Other parts use none of this
directly: alerts/api.py is their door.
"""
