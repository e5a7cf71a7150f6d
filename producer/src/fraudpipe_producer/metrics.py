"""Prometheus metrics, prefix fraudpipe_producer_: the scheme of docs/metrics.md (base units,
counters exported with `_total`, bounded labels).

Served on `--metrics-port` (PRODUCER_METRICS_PORT; off by default, since most runs are a
command that ends). Counters move in the send loop's steps, not per message, so the producer
keeps its throughput.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sent = Counter(
            "fraudpipe_producer_sent_transactions",
            "Transactions queued for the transactions topic.",
            registry=self.registry,
        )
        self.fraudulent = Counter(
            "fraudpipe_producer_fraudulent_transactions",
            "Queued transactions that are fraud by construction (ground truth, never sent with "
            "the transaction).",
            registry=self.registry,
        )
        self.delivery_errors = Counter(
            "fraudpipe_producer_delivery_errors",
            "Messages the broker did not acknowledge (reported by librdkafka's callbacks).",
            registry=self.registry,
        )
        self._counted = (0, 0, 0)

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def update(self, sent: int, fraudulent: int, errors: int) -> None:
        """Bring the counters up to the loop's running totals."""
        before_sent, before_fraud, before_errors = self._counted
        self.sent.inc(sent - before_sent)
        self.fraudulent.inc(fraudulent - before_fraud)
        self.delivery_errors.inc(max(errors - before_errors, 0))
        self._counted = (sent, fraudulent, max(errors, before_errors))
