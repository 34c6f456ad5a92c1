"""Prometheus metrics of the alert engine process (``CC_ALERTS_METRICS_PORT``).

Like the collector's, each :class:`AlertsMetrics` owns its registry, so several engines in one
process (tests, ``control-center demo``) never clash over names in the global registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class AlertsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.is_leader = Gauge(
            "cc_alerts_is_leader",
            "1 while this instance holds the alert engine's lease and acts; 0 on standby",
            registry=r,
        )
        self.leadership_changes = Counter(
            "cc_alerts_leadership_changes",
            "times this instance took the lease or lost it",
            ["change"],
            registry=r,
        )
        self.cycles = Counter(
            "cc_alerts_cycles", "full evaluation cycles by outcome", ["outcome"], registry=r
        )
        self.cycle_seconds = Histogram(
            "cc_alerts_cycle_seconds",
            "time of one full cycle (evaluate, write, deliver)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.alerts = Counter(
            "cc_alerts_changes", "alerts raised, escalated and resolved", ["change"], registry=r
        )
        self.deliveries = Counter(
            "cc_alerts_outbox_messages",
            "outbox messages by delivery outcome (sent, failed, deferred)",
            ["outcome"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "cc_alerts_mqtt_connected", "1 while connected to the broker", registry=r
        )

    def observe_cycle(self, summary: dict[str, Any], seconds: float) -> None:
        self.cycle_seconds.observe(seconds)
        for change in ("raised", "escalated", "resolved"):
            self.alerts.labels(change).inc(summary.get(change, 0))

    def observe_delivery(self, sent: int, failed: int, deferred: int) -> None:
        self.deliveries.labels("sent").inc(sent)
        self.deliveries.labels("failed").inc(failed)
        self.deliveries.labels("deferred").inc(deferred)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
