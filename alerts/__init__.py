"""Alerts: detectors, the streaming engine (`cityops alerts`), lifecycle, incidents,
notifications, escalation, KPIs and evaluation (docs/alerts.md).

Pure modules (detectors, series, engine, lifecycle, incidents, notify, messages, events, params,
evaluation) import no broker, database or environment; store, kpis, enrich, channels, dispatch and
service are the adapters and wiring. alerts and ingestion meet only through the broker and the
database.
"""
