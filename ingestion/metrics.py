"""Prometheus metrics of one ingestion worker (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    # one declaration per metric, read as a list: longer than 60 lines on purpose
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "cityops_ingest_messages_received", "MQTT messages taken off the queue", registry=r
        )
        self.stored = Counter(
            "cityops_ingest_readings_stored", "readings newly stored (committed)", registry=r
        )
        self.duplicates = Counter(
            "cityops_ingest_readings_duplicate",
            "readings received again and not stored twice",
            registry=r,
        )
        self.quarantined = Counter(
            "cityops_ingest_messages_quarantined",
            "messages rejected and stored in the quarantine",
            ["reason"],
            registry=r,
        )
        self.batch_readings = Histogram(
            "cityops_ingest_batch_readings",
            "readings per committed batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 50000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "cityops_ingest_batch_seconds",
            "time to write and commit one batch [s]",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.lag = Gauge(
            "cityops_ingest_lag_seconds",
            "commit time minus receive time of the oldest message of the last batch [s]",
            registry=r,
        )
        self.reading_age = Gauge(
            "cityops_ingest_reading_age_seconds",
            "commit time minus the newest reading timestamp of the last batch [s]",
            registry=r,
        )
        self.stalled = Gauge(
            "cityops_ingest_stalled",
            "1 while batches cannot be committed (database down): nothing is acknowledged",
            registry=r,
        )
        self.queue_depth = Gauge(
            "cityops_ingest_queue_depth", "messages received, not yet taken", registry=r
        )
        self.connected = Gauge("cityops_ingest_mqtt_connected", "1 when connected", registry=r)
        self.sessions_lost = Counter(
            "cityops_ingest_sessions_lost",
            "broker sessions found lost (possible data gap)",
            registry=r,
        )
        self.db_errors = Counter(
            "cityops_ingest_db_errors", "failed batch writes (retried)", registry=r
        )
        # evaluated at each scrape (set_function): a healthcheck reads this one line
        self.healthy = Gauge(
            "cityops_ingest_healthy",
            "1 when every thread is alive and a commit or heartbeat happened recently",
            registry=r,
        )
