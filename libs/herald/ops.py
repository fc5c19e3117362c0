"""`/healthz`, `/readyz` and `/metrics`, the same on every Herald process.

`/healthz` answers while the event loop runs. `/readyz` runs the process's readiness check
(dependencies reachable, topics present), caching the verdict briefly so that probes cannot
overload the database or broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import asyncpg
import msgspec
import prometheus_client
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from herald import metrics

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]
"""Returns a map of component -> "ok" or a short reason; ready when all are "ok"."""


class Health(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


def ops_handlers(
    check: ReadyCheck,
    cache_seconds: float = 1.0,
    live: Callable[[], dict[str, str]] | None = None,
    *,
    role: metrics.Role | None = None,
) -> list[HTTPRouteHandler]:
    """`check` (dependencies) is cached for `cache_seconds`; `live` (in-memory state, such as the
    consumer groups joined) is asked on every probe. `/metrics` shows the unlabelled metrics
    `role` keeps (`metrics.UNLABELLED_OWNERS`); a double (None) shows none of Herald's."""
    hidden = metrics.not_shown_by(role)
    cached: list[tuple[float, dict[str, str]]] = []

    @get("/healthz", include_in_schema=False, sync_to_thread=False)
    def healthz() -> Health:
        return Health(status="ok")

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[Health]:
        now = time.monotonic()
        if not cached or cached[0][0] < now:
            try:
                result = await check()
            except Exception as exc:
                result = {"check": type(exc).__name__}
            cached[:] = [(now + cache_seconds, result)]
        checks = {**cached[0][1], **(live() if live is not None else {})}
        ready = all(v == "ok" for v in checks.values())
        return Response(
            Health(status="ok" if ready else "unavailable", checks=checks), status_code=200 if ready else 503
        )

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics_page() -> Response[bytes]:
        return Response(exposition(hidden), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return [healthz, readyz, metrics_page]


async def check_postgres(pool: asyncpg.Pool) -> str:
    await pool.fetchval("SELECT 1")
    return "ok"


def exposition(hidden: frozenset[str] = frozenset()) -> bytes:
    """This process's metrics, or, with several API worker processes (PROMETHEUS_MULTIPROC_DIR set
    by `herald api`), the sum over all of them, whichever process the scrape lands on; without
    the metric families named in `hidden`."""
    source: Collector = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        source = registry
    return prometheus_client.generate_latest(_Without(source, hidden))


class _Without:
    """A registry's families but those named."""

    def __init__(self, source: Collector, hidden: frozenset[str]) -> None:
        self._source, self._hidden = source, hidden

    def collect(self) -> Iterator[Metric]:
        return (family for family in self._source.collect() if family.name not in self._hidden)


DoubleCounts = Mapping[str, "float | Mapping[str, float]"]


def double_metrics(
    prefix: str, counts: Callable[[], DoubleCounts], path: str = "/_sim/metrics"
) -> HTTPRouteHandler:
    """`GET <path>` of a double: its own counts (`counts()`, read when scraped), the provider's
    view of the traffic beside Herald's: a number as `<prefix>_<name>`, a mapping as
    `<prefix>_<name>{kind=...}`. Never Herald's catalogue: a double is the outside world."""

    class Counts:
        def collect(self) -> Iterator[Metric]:
            for name, value in counts().items():
                help_text = f"The double's own count: {name}."
                if isinstance(value, Mapping):
                    family = GaugeMetricFamily(f"{prefix}_{name}", help_text, labels=["kind"])
                    for kind, n in value.items():
                        family.add_metric([kind], float(n))
                    yield family
                else:
                    yield GaugeMetricFamily(f"{prefix}_{name}", help_text, value=float(value))

    @get(path, include_in_schema=False, sync_to_thread=False)
    def own_metrics() -> Response[bytes]:
        registry = prometheus_client.CollectorRegistry(auto_describe=False)
        registry.register(Counts())
        return Response(prometheus_client.generate_latest(registry), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return own_metrics
