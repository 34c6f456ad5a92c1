"""Prometheus metrics of the collector process.

Each :class:`CollectorMetrics` owns its registry, so several collectors in one process (tests,
``control-center demo``) never clash over metric names in the global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from collectors.ingest import BatchResult


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "cc_collector_received", "MQTT messages received and processed", registry=r
        )
        self.stored = Counter("cc_collector_stored", "new events stored", registry=r)
        self.duplicates = Counter(
            "cc_collector_duplicates", "events already stored (same event_id)", registry=r
        )
        self.dead_letters = Counter(
            "cc_collector_dead_letters", "messages dead-lettered", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "cc_collector_batch_size",
            "messages per committed batch",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "cc_collector_commit_seconds", "time to apply and commit one batch", registry=r
        )
        self.queue_depth = Gauge(
            "cc_collector_queue_depth", "messages received but not yet committed", registry=r
        )
        self.lag_seconds = Histogram(
            "cc_collector_lag_seconds",
            "arrival minus occurred_at of new events (centre backlog and clock skew)",
            buckets=(1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600),
            registry=r,
        )
        self.db_retries = Counter(
            "cc_collector_db_retries", "batch attempts that failed on the database", registry=r
        )
        self.connected = Gauge(
            "cc_collector_connected", "1 while connected to the broker", registry=r
        )

    def observe_batch(self, result: BatchResult, seconds: float) -> None:
        self.batch_size.observe(result.received)
        self.commit_seconds.observe(seconds)
        self.stored.inc(result.stored)
        self.duplicates.inc(result.duplicates)
        for reason, n in result.by_reason.items():
            self.dead_letters.labels(reason=reason).inc(n)
        for lag in result.lags:
            self.lag_seconds.observe(max(lag, 0.0))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
