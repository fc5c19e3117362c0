"""Typed settings, one Struct per concern, read from the environment once.

`Settings.from_env()` is called in exactly one place per process (the CLI entry point, or a
test fixture) and the result is passed down; nothing reads `os.environ` at import time.
"""

from __future__ import annotations

import base64
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import msgspec.inspect

from herald.domain.models import MAX_TTL_SECONDS

MIN_CONTENT_DAYS = math.ceil(MAX_TTL_SECONDS / 86_400) + 1
"""The longest TTL in days, plus one: content must outlast every message that may still be sent."""


class DatabaseSettings(msgspec.Struct, frozen=True):
    url: str = ""
    """Empty means "start the embedded PostgreSQL" (only `herald dev` and the tests do that)."""
    pool_min: int = 1
    pool_max: int = 10
    command_timeout_seconds: float = 30.0
    """The longest one query or connection attempt may take before it fails as transient
    (workers and sinks then retry; the API answers 503 sooner, see `api.database_timeout_seconds`)."""


class KafkaSettings(msgspec.Struct, frozen=True):
    bootstrap: str = ""
    """Empty means "start the embedded broker" (only `herald dev` and the tests do that)."""
    topic_prefix: str = ""
    """Prepended to every topic and consumer-group name; lets tests share one broker."""
    idempotent_producer: bool = False
    """On for real Kafka; the embedded Tansu broker cannot do InitProducerId (INFRA.md)."""
    linger_ms: int = 2
    fetch_max_wait_ms: int = 20
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_500
    request_timeout_ms: int = 30_000


class ApiSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_token: str = ""
    max_body_bytes: int = 1024 * 1024
    auth_cache_seconds: float = 5.0
    """A revoked key stops working in every API process within this many seconds."""
    key_requests_per_second: float = 2000.0
    """HTTP requests per API key per API process (429 + Retry-After beyond); 0 turns it off."""
    template_cache_seconds: float = 5.0
    database_timeout_seconds: float = 5.0
    """The API's bound on each query and connection attempt: a stalled database answers 503
    `database_unavailable` within about twice this (the query, then asyncpg's wait for its
    cancellation) instead of holding requests open for the stall (a read waited 40 s before).
    Usage exports, whose queries scan a month, keep the longer `database.command_timeout_seconds`
    per chunk."""
    request_read_timeout_seconds: float = 15.0
    """A request's headers and body must arrive within this from its first byte (slowloris);
    the connection is closed otherwise."""
    max_connections: int = 4096
    """Connections (and requests in progress) per API process; beyond them uvicorn answers 503."""
    failed_auth_per_minute: int = 30
    """Failed authentications (bad API key or admin token) allowed per client address per minute
    in each API process; beyond them 429 `too_many_failed_attempts`, before any credential is
    checked. 0 turns it off."""
    admin_port: int = 0
    """When set, the admin API is served on this port only (a listener an operator can keep off
    the internet), and the tenant API on `port` only. 0: both on `port`."""
    allow_private_callbacks: bool = False
    """Production refuses callback URLs that resolve to private, loopback or link-local addresses
    (SSRF). `herald dev` and the tests turn this on to call back to localhost."""
    callback_ports: tuple[int, ...] = (443,)
    """The ports a production callback URL may name (https); others are refused at create and at
    every dispatch."""


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
    metrics_host: str = "127.0.0.1"
    """Where /metrics, /healthz and /readyz listen (0.0.0.0 in a container)."""
    metrics_port: int = 0


class SinkSettings(msgspec.Struct, frozen=True):
    batch_max_records: int = 2000
    batch_wait_seconds: float = 0.1
    """After a batch smaller than batch_max_records, wait this long before the next, so records
    pile up into fewer, larger transactions and broker fetches (a trickle of small batches cost
    the broker and Postgres about a third more per message on the 2-core bench). The status
    projection and callbacks lag by at most this much more."""
    fetch_max_wait_ms: int = 100
    """The sinks' broker long-poll (the worker keeps `kafka.fetch_max_wait_ms`, 20 ms, for OTPs:
    Tansu does not answer a waiting fetch early when records arrive)."""
    commit_interval_seconds: float = 1.0
    """Offsets are committed at most this often; a crash replays what was handled since, which
    the idempotent sinks absorb."""
    receipt_timeout_seconds: float = 72 * 3600
    """A `sent` message with no receipt after this long becomes `failed` (receipt_timeout).
    72 h is the longest SMS validity period carriers commonly apply."""
    sweep_interval_seconds: float = 60.0
    receipt_sweep_seconds: float = 5.0
    """How often the sinks bind every provider receipt still waiting for its send
    (`herald_sinks/receipts.py`). Receipts normally bind at once, when the API records them or
    when the status sink records their send; the sweep is for what a crash or a broker outage
    left waiting, and for receipts bound by their echoed `callback_data`."""
    receipt_unmatched_after_seconds: float = 600.0
    """A receipt that matches no send of Herald's for this long is set aside as `unmatched`
    (`herald_receipts_total{outcome="unmatched"}`): the sweep stops reading it, and a send recorded
    later still binds it. A receipt for a send whose `sent` event was lost binds by its echoed
    message id only within this time."""
    callback_timeout_seconds: float = 5.0
    callback_per_tenant_in_flight: int = 4
    """Callback POSTs in flight per tenant across every sinks process (leased rows count): a
    slow or failing endpoint holds at most this many, and other tenants' callbacks go on."""
    callback_retry_hours: float = 24.0
    callback_poll_seconds: float = 0.1
    callback_order_hold_seconds: float = 10.0
    """How long a receipt's callback (`delivered`, `read`, a provider's `failed`) waits for its
    message's `sent` to be recorded, so that the tenant gets `sent` first. A `sent` held up
    longer (a worker restart between the provider's answer and the event) finds the receipt's
    callback gone out and is not sent at all (`herald.db.callbacks`)."""
    callback_keep_sent_seconds: float = 600.0
    """How long a delivered callback row is kept (without its payload): a `sent` for its
    message's receipt to find, any for a stale or replayed event of its message to be recognised.
    A receipt recorded later than that (the callbacks sink lagging by minutes) waits out the hold."""
    parked_report_seconds: float = 15.0
    """How often the parked records are recounted for `herald_sink_parked_records` (a replay or
    discard runs in another process)."""
    billing_settle_seconds: float = 2.0
    """How often billable events that arrived before their message row are settled."""
    metrics_host: str = "127.0.0.1"
    """Where /metrics, /healthz and /readyz listen (0.0.0.0 in a container)."""
    metrics_port: int = 0


class CarrierSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8090
    receipt_url: str = "http://127.0.0.1:8080/v1/providers/carrier-sim/receipts"
    receipt_delay_ms: int = 50
    receipt_batch_max: int = 200
    """Receipts per POST (to `<receipt_url>/batch`); 1 sends each on its own."""
    receipt_batch_ms: int = 20
    """How long a due receipt may wait for others to share its POST."""
    latency_ms: int = 5
    """Median send latency."""
    latency_p99_ms: int = 0
    """99th percentile of send latency (log-normal); 0 means the median, i.e. constant."""
    max_per_second: float = 0.0
    """Throughput cap answering 429 + Retry-After beyond it; 0 is none."""
    throttle_retry_after: bool = True
    """Whether a throughput 429 names its wait (the time to the next token). False: it names
    none, as many providers' rate-limit errors do, and the sender must pick its own pause."""


DEV_RECEIPT_SECRET = "dev-receipt-secret"  # noqa: S105 - the development default, refused in production
DEV_KEK = base64.urlsafe_b64encode(b"herald development key-encryption").decode()
"""The development key-encryption key: public (it is in this file), refused in production."""
KNOWN_PLACEHOLDERS = frozenset({DEV_RECEIPT_SECRET, DEV_KEK, "change-me-receipt-secret", "change-me-admin-token",
                                "REPLACE", "dev-token", "test-admin-token"})  # fmt: skip
"""Values shipped in this repository's files: a production process refuses every one of them."""
MIN_SECRET_CHARS = 24


class ProviderSettings(msgspec.Struct, frozen=True):
    receipt_secret: str = DEV_RECEIPT_SECRET
    """Shared secret carrier-sim signs delivery receipts with (HMAC-SHA256)."""


class SecretSettings(msgspec.Struct, frozen=True):
    """Herald's own keys. Never logged; production refuses the development values."""

    kek: str = DEV_KEK
    """The key-encryption key: base64url of at least 32 random bytes (`herald keygen`). Keys the
    recipient hashes (`herald.recipient_keys`); the secrets Herald stores are to be wrapped
    under it too."""
    previous_keks: tuple[str, ...] = ()
    """Earlier KEKs, still accepted while what they keyed ages out (a rotation: the new KEK in
    `kek`, the old one here for at least 24 h, the recipient-limit window)."""

    def keys(self) -> list[bytes]:
        """Every KEK as bytes, the current one first."""
        return [_kek_bytes(k) for k in (self.kek, *self.previous_keks)]


class RetentionSettings(msgspec.Struct, frozen=True):
    content_days: Annotated[int, msgspec.Meta(ge=MIN_CONTENT_DAYS)] = 30
    """Message recipients and bodies are unreadable after this many days (their hour's content
    key is deleted by `herald retention`; every process refuses older keys anyway). At least
    the longest TTL plus a day, so no message can lose its content while it may still be sent.
    The billing ledger and the status projection are kept."""


def _kek_bytes(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("a KEK must be base64url") from exc
    if len(key) < 32:
        raise ValueError("a KEK must hold at least 32 bytes")
    return key


Environment = Literal["development", "production"]


class BillingSettings(msgspec.Struct, frozen=True):
    """Herald as the seller on invoices (`herald/billing/invoices.py`)."""

    seller_name: str = "Herald Messaging Ltd"
    seller_address: str = "1 Example Quay, Dublin"
    seller_country: str = "IE"
    """ISO 3166-1 alpha-2, an EU member state: decides the VAT treatment (`herald/billing/tax.py`)."""
    seller_vat_id: str = "IE0000000HA"


class Settings(msgspec.Struct, frozen=True):
    environment: Environment = "production"
    """`herald dev` and the tests run as `development`; anything else is production, which
    refuses to start with a secret from this repository (`refusals`)."""
    data_dir: Path = Path(".herald")
    log_level: str = "INFO"
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings)
    carrier_sim: CarrierSimSettings = msgspec.field(default_factory=CarrierSimSettings)
    provider: ProviderSettings = msgspec.field(default_factory=ProviderSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    secrets: SecretSettings = msgspec.field(default_factory=SecretSettings)
    billing: BillingSettings = msgspec.field(default_factory=BillingSettings)

    def refusals(self) -> list[str]:
        """Why this configuration must not serve production (empty: it may). Names the variables,
        never their values. Development runs with the repository's defaults by design."""
        if self.environment == "development":
            return []
        found = []
        for name, value in (
            ("HERALD_ADMIN_TOKEN", self.api.admin_token),
            ("HERALD_PROVIDER_RECEIPT_SECRET", self.provider.receipt_secret),
            ("HERALD_SECRETS_KEK", self.secrets.kek),
        ):
            if value in KNOWN_PLACEHOLDERS or len(value) < MIN_SECRET_CHARS:
                found.append(f"{name} is unset, a development value or shorter than {MIN_SECRET_CHARS} characters")
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `HERALD_*` variables; unknown or malformed values raise ValueError."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name, value in env.items():
            if not name.startswith("HERALD_"):
                continue
            key = name.removeprefix("HERALD_").lower()
            key = _ALIASES.get(key, key)
            if key in _TOP_LEVEL:
                raw[key] = value
                continue
            for section in _SECTIONS:
                if key.startswith(section + "_"):
                    field = key.removeprefix(section + "_")
                    # Tuple settings are written comma-separated: HERALD_WORKER_RETRY_DELAYS_SECONDS=30,120
                    parsed = value.split(",") if (section, field) in _sequence_fields() else value
                    raw.setdefault(section, {})[field] = parsed  # type: ignore[index]
                    break
        try:
            settings = msgspec.convert(raw, cls, strict=False, dec_hook=_decode_path)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid HERALD_* setting: {exc}") from exc
        settings.secrets.keys()  # a KEK that is not a key is a configuration error, found here
        return settings


_TOP_LEVEL = {"data_dir", "log_level", "environment"}


@functools.cache
def _sequence_fields() -> frozenset[tuple[str, str]]:
    """(section, field) of every setting typed as a sequence, read off the Structs themselves."""
    sequences = (msgspec.inspect.VarTupleType, msgspec.inspect.TupleType, msgspec.inspect.ListType)
    found: set[tuple[str, str]] = set()
    for section in msgspec.inspect.type_info(Settings).fields:  # type: ignore[attr-defined]
        if isinstance(section.type, msgspec.inspect.StructType):
            found.update((section.name, f.name) for f in section.type.fields if isinstance(f.type, sequences))
    return frozenset(found)


# Public names from the design that do not follow the SECTION_FIELD pattern.
_ALIASES = {"admin_token": "api_admin_token"}
# Longest first, so HERALD_CARRIER_SIM_PORT maps to carrier_sim.port.
_SECTIONS = (
    "carrier_sim", "retention", "database", "provider", "secrets", "billing", "worker", "kafka", "sinks", "api",
)  # fmt: skip


def _decode_path(type_: type, obj: object) -> object:
    if type_ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(type_)
