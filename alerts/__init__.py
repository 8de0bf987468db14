"""Alerts: detectors, the streaming engine (`cityops alerts`), lifecycle, incidents,
notifications, escalation and evaluation (docs/alerts.md).

Pure modules (detectors/, balance, engine, lifecycle, incidents, notify, messages, events,
evaluation) import no broker, database or environment; stores/ (one module per table family),
enrich, channels, dispatch and service are the adapters and wiring. Other parts use alerts only
through alerts/api.py. alerts and ingestion meet only through the broker and the database.
"""
