"""Prometheus metrics, collected at scrape time from what already exists: each Databricks
client's counters, run counts by status from the store, and the lateness of due polls.

Poll lag is measured from the store, so the engine needs no hook: for every active run whose
next poll is due, how long ago it fell due (`now - next_poll_at`). A healthy engine keeps it
near zero; a backlog or a stopped engine shows at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from polysync.api.ports import MonitoredStore
from polysync.databricks.metrics import ClientMetrics
from polysync.domain.models import RunStatus
from polysync.services import Services

LAG_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _Snapshot:
    """The figures of one scrape, gathered asynchronously, then rendered synchronously."""

    def __init__(
        self,
        clients: Sequence[ClientMetrics],
        runs_by_status: Mapping[RunStatus, int],
        lags_s: Sequence[float],
    ) -> None:
        self.clients = clients
        self.runs_by_status = runs_by_status
        self.lags_s = lags_s

    def collect(self) -> Iterable[Metric]:
        calls: Counter[tuple[str, str]] = Counter()
        limited: Counter[str] = Counter()
        retries: Counter[str] = Counter()
        retry_wait_s = 0.0
        for metrics in self.clients:
            calls.update(metrics.calls)
            limited.update(metrics.rate_limited)
            retries.update(metrics.retries)
            retry_wait_s += metrics.retry_wait_s
        family = CounterMetricFamily(
            "polysync_databricks_api_calls",
            "Databricks API requests sent, by endpoint and HTTP status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(calls.items()):
            family.add_metric([endpoint, status], count)
        yield family
        family = CounterMetricFamily(
            "polysync_databricks_rate_limited",
            "Databricks 429 answers (REQUEST_LIMIT_EXCEEDED), by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, count in sorted(limited.items()):
            family.add_metric([endpoint], count)
        yield family
        family = CounterMetricFamily(
            "polysync_databricks_retries",
            "Databricks API calls repeated after a retryable failure, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, count in sorted(retries.items()):
            family.add_metric([endpoint], count)
        yield family
        yield CounterMetricFamily(
            "polysync_databricks_retry_wait_seconds",
            "Seconds spent waiting before retries (Retry-After and backoff).",
            value=retry_wait_s,
        )
        gauge = GaugeMetricFamily(
            "polysync_runs", "Runs in the store, by status.", labels=["status"]
        )
        for status in RunStatus:
            gauge.add_metric([status.value], self.runs_by_status.get(status, 0))
        yield gauge
        yield _lag_histogram(self.lags_s)
        yield GaugeMetricFamily(
            "polysync_poll_lag_max_seconds",
            "How late the most overdue poll of an active run is.",
            value=max(self.lags_s, default=0.0),
        )


def _lag_histogram(lags_s: Sequence[float]) -> GaugeHistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    for bound in LAG_BUCKETS_S:
        buckets.append((_bound(bound), sum(1 for lag in lags_s if lag <= bound)))
    buckets.append(("+Inf", len(lags_s)))
    return GaugeHistogramMetricFamily(
        "polysync_poll_lag_seconds",
        "Active runs whose poll is due, by how late it is (now - next poll time).",
        buckets=buckets,
        gsum_value=sum(lags_s),
    )


def _bound(value: float) -> str:
    return repr(float(value))


async def render_metrics(services: Services, store: MonitoredStore) -> bytes:
    """The Prometheus text exposition of this process and its store, now."""
    runs_by_status = await store.count_runs_by_status()
    lags_s = [*await store.poll_lags_s(services.now()), *services.engine.poll_lags_s()]
    clients = [client.metrics for client in services.connections.clients()]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(clients, runs_by_status, lags_s))
    return generate_latest(registry)
