"""The settings every process shares, one Struct per concern, and how they are read from the
environment.

Each service owns its own section (`herald_api.settings`, `herald_worker.settings`, …) and types
what it reads as a Protocol; `herald_cli.settings.Settings` composes every section and is read in
exactly one place per process (the `herald` command, or a test fixture), then passed down.
Nothing reads `os.environ` at import time.
"""

from __future__ import annotations

import base64
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Protocol, TypeVar

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


class CallbackSettings(msgspec.Struct, frozen=True):
    """Where a tenant's callback URL may point: checked by the API at create and by the callback
    sink at every dispatch, so one section serves both."""

    allow_private: bool = False
    """Production refuses callback URLs that resolve to private, loopback or link-local addresses
    (SSRF). `herald dev` and the tests turn this on to call back to localhost."""
    ports: tuple[int, ...] = (443,)
    """The ports a production callback URL may name (https); others are refused at create and at
    every dispatch."""


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


class WhatsAppSettings(msgspec.Struct, frozen=True):
    """Meta's Graph API, used by the API (template submission), the worker (sends) and the sinks
    (the template sweep). Each tenant's own account and token are stored, not set here."""

    graph_url: str = "https://graph.facebook.com/v21.0"
    """The Graph API's base, its version included. `herald dev` and the tests point it at the
    local double (`herald whatsapp-sim`)."""
    timeout_seconds: float = 10.0
    template_sweep_seconds: float = 300.0
    """How often the sinks list every account's templates from Meta, catching a status change
    whose webhook was lost."""
    account_cache_seconds: float = 5.0
    """A rotated token, a revoked account or a template's new status reaches every worker within
    this long."""


class EmailSettings(msgspec.Struct, frozen=True):
    """Email, for the API (identities, one-click unsubscribe) and the worker (SMTP delivery)."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    """The relay every mail goes through (a provider's submission host, or `herald mail-sim`)."""
    smtp_username: str = ""
    smtp_password: str = ""
    """Never logged."""
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_tls_ca_file: str = ""
    """A CA bundle (PEM) the relay's certificate is verified against; empty: the system's CAs."""
    smtp_connections: int = 4
    """Connections each worker keeps open to the relay at most (each carries one mail at a time)."""
    smtp_relay_connections: int = 0
    """The connections the relay takes from all of Herald at once (its per-client limit), held
    across workers by leases in PostgreSQL, each worker taking an equal share (0: no limit beyond
    each worker's `smtp_connections`)."""
    smtp_idle_seconds: float = 10.0
    """A connection unused this long is closed (and its slot of the relay's limit given back)."""
    smtp_rate_per_second: int = 0
    """The relay's capacity, held across workers (0: none)."""
    smtp_timeout_seconds: float = 15.0
    smtp_delivery_reports: bool = True
    """The relay sends delivery status notifications (RFC 3461/3464) for success and failure to the
    bounce address: a mail is `sent` when the relay takes it and `delivered` or `failed` by its
    report. False: the relay's acceptance is final (`delivered`); bounces still suppress."""
    inbound_port: int = 0
    """Where the API takes delivery reports and complaints by SMTP (the bounce domains' MX); 0: off."""
    inbound_host: str = "127.0.0.1"
    dns_server: str = ""
    """`host:port` of the DNS server identities are verified against; empty: the system's resolvers."""
    unsubscribe_url: str = "http://127.0.0.1:8080/v1/unsubscribe"
    """Herald's public one-click unsubscribe endpoint, as a mail's reader reaches it (https in production)."""
    unsubscribe_mailto: str = "unsubscribe@herald.invalid"
    """The mailbox of `List-Unsubscribe`'s mailto (the inbound path)."""
    identity_cache_seconds: float = 5.0
    providers: tuple[Literal["smtp", "ses"], ...] = ("smtp",)
    """The providers email goes through, in order: the next is tried only when the one before
    certainly did not take the mail (`herald_worker.email.router`)."""
    ses_endpoint_url: str = ""
    """Amazon SES v2's endpoint; empty: the region's (`make run` and the tests: the double)."""
    ses_region: str = "eu-west-1"
    ses_access_key_id: str = ""
    ses_secret_access_key: str = ""
    """Never logged; empty: the AWS default chain (role, environment)."""
    ses_rate_per_second: int = 0
    """The account's maximum send rate, held across workers (0: none)."""
    ses_configuration_set: str = ""
    ses_notifications: bool = False
    """SES publishes delivery, bounce and complaint events to an SNS topic that calls Herald
    (`/v1/providers/ses/notifications`): a mail is `sent` when SES takes it and `delivered` or
    `failed` by its event. False: SES's acceptance is final (`delivered`)."""
    ses_notification_topics: tuple[str, ...] = ()
    """The SNS topic ARNs Herald takes notifications from; any other is refused."""
    sns_trusted_prefixes: tuple[str, ...] = ()
    """URL prefixes trusted for SNS signing certificates and subscription confirmations besides
    AWS's own (`https://sns.<region>.amazonaws.com/`): the double's, in development."""


class Common(msgspec.Struct, frozen=True):
    """The sections every process shares. A process's settings extend this with its own section
    (`herald_api.settings.ApiSettings`, …); `herald_cli.settings.Settings` composes them all."""

    environment: Environment = "production"
    """`herald dev` and the tests run as `development`; anything else is production, which
    refuses to start with a secret from this repository (`refusals`)."""
    data_dir: Path = Path(".herald")
    log_level: str = "INFO"
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    provider: ProviderSettings = msgspec.field(default_factory=ProviderSettings)
    callbacks: CallbackSettings = msgspec.field(default_factory=CallbackSettings)
    whatsapp: WhatsAppSettings = msgspec.field(default_factory=WhatsAppSettings)
    email: EmailSettings = msgspec.field(default_factory=EmailSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    secrets: SecretSettings = msgspec.field(default_factory=SecretSettings)
    billing: BillingSettings = msgspec.field(default_factory=BillingSettings)


class Shared(Protocol):
    """The shared sections every serving process reads; a service's own Protocol
    (`ApiConfig`, `WorkerConfig`, `SinksConfig`) adds its section and whatever else it reads."""

    @property
    def database(self) -> DatabaseSettings: ...
    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def retention(self) -> RetentionSettings: ...
    @property
    def secrets(self) -> SecretSettings: ...
    @property
    def whatsapp(self) -> WhatsAppSettings: ...
    @property
    def email(self) -> EmailSettings: ...


def placeholder_refusals(secrets: Mapping[str, str]) -> list[str]:
    """Which of these secrets (variable name → value) are unset, shipped in this repository or
    too short for production. Names the variables, never their values."""
    return [
        f"{name} is unset, a development value or shorter than {MIN_SECRET_CHARS} characters"
        for name, value in secrets.items()
        if value in KNOWN_PLACEHOLDERS or len(value) < MIN_SECRET_CHARS
    ]


S = TypeVar("S", bound=Common)


def read_env(cls: type[S], env: Mapping[str, str] | None = None) -> S:
    """Build `cls` from `HERALD_*` variables: `HERALD_<SECTION>_<FIELD>` for each Struct-typed
    field of `cls`, `HERALD_<FIELD>` for the others. Unknown or malformed values raise ValueError."""
    env = os.environ if env is None else env
    sections, top_level, sequences, fields = _layout(cls)
    raw: dict[str, object] = {}
    for name, value in env.items():
        if not name.startswith("HERALD_"):
            continue
        key = name.removeprefix("HERALD_").lower()
        key = _ALIASES.get(key, key)
        if key in top_level:
            raw[key] = value
            continue
        for section in sections:
            if key.startswith(section + "_"):
                field = key.removeprefix(section + "_")
                if field not in fields[section]:
                    raise ValueError(f"unknown setting {name}: {section} has no {field!r}")
                # Tuple settings are written comma-separated: HERALD_WORKER_RETRY_DELAYS_SECONDS=30,120
                parsed = value.split(",") if (section, field) in sequences else value
                raw.setdefault(section, {})[field] = parsed  # type: ignore[index]
                break
    try:
        settings = msgspec.convert(raw, cls, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid HERALD_* setting: {exc}") from exc
    settings.secrets.keys()  # a KEK that is not a key is a configuration error, found here
    return settings


@functools.cache
def _layout(
    cls: type[Common],
) -> tuple[tuple[str, ...], frozenset[str], frozenset[tuple[str, str]], dict[str, frozenset[str]]]:
    """Read off the Structs themselves: the section names, longest first (so
    HERALD_CARRIER_SIM_PORT maps to carrier_sim.port, not a `carrier` section), the top-level
    fields, (section, field) of every setting typed as a sequence, and each section's fields."""
    kinds = (msgspec.inspect.VarTupleType, msgspec.inspect.TupleType, msgspec.inspect.ListType)
    sections: list[str] = []
    top_level: set[str] = set()
    sequences: set[tuple[str, str]] = set()
    fields: dict[str, frozenset[str]] = {}
    for field in msgspec.inspect.type_info(cls).fields:  # type: ignore[attr-defined]
        if isinstance(field.type, msgspec.inspect.StructType):
            sections.append(field.name)
            fields[field.name] = frozenset(f.name for f in field.type.fields)
            sequences.update((field.name, f.name) for f in field.type.fields if isinstance(f.type, kinds))
        else:
            top_level.add(field.name)
    return tuple(sorted(sections, key=len, reverse=True)), frozenset(top_level), frozenset(sequences), fields


# Public names that do not follow the SECTION_FIELD pattern, and names an operator may still have
# set from before a setting moved to its section.
_ALIASES = {
    "admin_token": "api_admin_token",
    "api_allow_private_callbacks": "callbacks_allow_private",
    "api_callback_ports": "callbacks_ports",
}


def _decode_path(type_: type, obj: object) -> object:
    if type_ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(type_)
