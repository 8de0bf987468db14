"""MQTT in, PostgreSQL out: every reading stored once or quarantined with a reason (docs/ingestion.md)."""
