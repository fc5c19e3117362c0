"""The worker's settings section (`HERALD_WORKER_*`) and what a worker process reads."""

from __future__ import annotations

from typing import Protocol

import msgspec

from herald.settings import Shared


class WorkerSettings(msgspec.Struct, frozen=True):
    max_in_flight: int = 64
    """Provider calls in flight per worker. Size it by Little's law: target msg/s x provider
    latency (1,000 msg/s at 30 ms needs 30), with room for retries waiting out a backoff. Far
    more only congests the event loop: on the 2-core bench, 256 instead of 24 raised the OTP
    p99 behind a backlog from 0.33 s to 1.3 s for no throughput, while 64 instead of 32 gave
    16% more msg/s at the same OTP p99 behind 1M (loadtests/RESULTS.md)."""
    batch_max_records: int = 200
    """Records per fetch: small enough that the fetch loop comes round often for an OTP."""
    outcome_linger_ms: int = 100
    """How long the worker's producer gathers outcome records (`sent` events, retries, dead
    letters) into one batch per partition. Off the OTP's clock: `sent` is stamped when the
    provider answers and the provider slot is already free. Larger batches on `herald.events`
    cut the broker's CPU (its fetch cost follows stored batches; 100 ms against 20 took a fifth
    off it at the 1M backlog, loadtests/RESULTS.md). A `sent` event may then reach the topic
    after its message's receipt; the callback outbox puts them back in order
    (`herald.db.callbacks`), and the status projection folds events by time and rank."""
    fetch_partition_bytes: int = 128 * 1024
    """Prefetched per partition per fetch (~300 messages). aiokafka drops a partition's prefetch
    when it is paused, and priority pauses lower classes often: with the 1 MiB default the
    worker re-read ~25x what it delivered on the bench."""
    provider_url: str = "http://127.0.0.1:8090"
    provider_timeout_seconds: float = 5.0
    provider_connections: int = 64
    """Keep-alive connections to the provider (aiohttp's connector limit): as many as
    `max_in_flight`, or calls wait for a connection while holding a provider slot."""
    provider_rate_per_second: float = 0.0
    """The provider account's throughput, held across all workers (0: none). Set it to what the
    provider grants (WhatsApp Cloud API: 80 msg/s per business number by default) so that sends
    wait for capacity here instead of being answered 429 (`herald_worker.provider_gate`)."""
    provider_attempts: int = 6
    """In-process tenacity attempts for transient provider errors: backoff 0.1, 0.2, 0.4, 0.8,
    1.6 s (+ jitter, and at least the provider's Retry-After), so a blip of a few seconds is
    ridden out; a longer outage fails the message with `<reason>_retries_exhausted`."""
    drain_seconds: float = 20.0
    retry_delays_seconds: tuple[float, ...] = (30.0, 120.0, 600.0, 1800.0, 7200.0)
    """Delays before each try from `herald.retry` once in-process retries ran out; when all are
    spent the message fails with `<reason>_retries_exhausted` (or expires first, at its TTL)."""
    schedule_park_ahead_seconds: float = 30.0
    """A scheduled message (`send_at`) due further ahead than this waits in PostgreSQL until a
    worker releases it; a nearer one waits in the worker's memory like a retry."""
    schedule_release_interval_seconds: float = 0.2
    """How often each worker looks for scheduled messages come due (their lateness at most)."""
    recipient_gap_seconds: float = 6.0
    """Minimum time between two sends to one recipient of one tenant (WhatsApp's pair limit)."""
    buffer_per_class: int = 2000
    """Fetched messages waiting per class before that class's partitions are paused."""
    tenant_buffer_seconds: float = 5.0
    """A tenant may have this many seconds of its rate waiting in a worker; the rest is deferred
    to `herald.retry` for when its turn comes, so it cannot fill the buffer others share."""
    tenant_buffer_min: int = 50
    tenant_cache_seconds: float = 5.0
    """A tenant's rate and suspension are re-read this often: a PATCH reaches the workers within
    it (the API's `auth_cache_seconds` has the same default)."""
    suspended_recheck_seconds: float = 60.0
    """A suspended tenant's messages are never sent: each goes back to `herald.retry` for this
    long (no attempt spent), until the suspension is lifted or its TTL passes (then `expired`)."""
    commit_interval_seconds: float = 0.5
    utilisation_interval_seconds: float = 10.0
    retry_hold_max: int = 5000
    """`herald.retry` records held in memory until due; beyond this the retry partitions pause."""
    sms_config_refresh_seconds: float = 2.0
    """How often the sms providers' and routes' version is polled: a change applies within it."""
    sms_health_failures: int = 3
    """Failures in a row that take an sms provider out of rotation (`herald_worker.sms.health`)."""
    sms_health_cooldown_seconds: float = 10.0
    """How long a failing provider stays out before one message probes it."""
    smpp_submit_timeout_seconds: float = 10.0
    """A submit with no answer by then may have been taken: retried on that provider alone."""
    smpp_connect_timeout_seconds: float = 3.0
    twilio_status_callback_url: str = "http://127.0.0.1:8080/v1/providers/twilio"
    """Herald's public URL for Twilio-format status callbacks (`<it>/<provider>/status`): what the
    aggregator calls and signs, so exactly what the API sees (`api.public_url`)."""
    metrics_host: str = "127.0.0.1"
    """Where /metrics, /healthz and /readyz listen (0.0.0.0 in a container)."""
    metrics_port: int = 0


class WorkerConfig(Shared, Protocol):
    """What a worker process reads: its section beside the `Shared` ones
    (`herald_cli.settings.Settings` composes them all)."""

    @property
    def worker(self) -> WorkerSettings: ...
