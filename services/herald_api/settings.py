"""The API's settings section (`HERALD_API_*`) and what an API process reads."""

from __future__ import annotations

from typing import Annotated, Protocol

import msgspec

from herald.settings import (
    BillingSettings,
    CallbackSettings,
    ProviderSettings,
    Shared,
)


class ApiSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_token: str = ""
    max_body_bytes: int = 1024 * 1024
    public_url: str = ""
    """Herald's base URL as providers call it (through a proxy or load balancer): a callback
    signed over its URL (Twilio's) is verified against this plus the path. Empty: the URL the
    request arrived at."""
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


class CampaignSettings(msgspec.Struct, frozen=True):
    """Campaigns (`HERALD_CAMPAIGNS_*`): uploads and the producer in each API process."""

    rate_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    """The part of a tenant's rate its campaigns are produced at: the rest is left to its other
    sends (OTPs, receipts), which the worker also puts ahead of marketing."""
    max_upload_bytes: int = 4 * 1024**3
    """The largest recipients file (10,000,000 rows of CSV stay well under it)."""
    upload_idle_seconds: float = 30.0
    """An upload whose bytes stop arriving for this long is cut (the whole-request read deadline
    does not apply to uploads: a large file takes minutes)."""
    lease_seconds: float = 15.0
    """A producer that stops renewing its hold on a campaign for this long loses it to another
    API process, which resumes from the last recorded row."""
    poll_seconds: float = 0.5
    """How often each API process looks for campaigns due to produce."""
    chunk_rows: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 1000
    """The most rows produced per round (one broker round trip, one cursor write)."""
    max_concurrent: Annotated[int, msgspec.Meta(ge=0)] = 8
    """Campaigns one API process produces at once; 0: this process produces none."""
    spool_dir: str | None = None
    """Where a Parquet upload is spooled while it arrives (its index is at its end). None: the
    system's temporary directory."""


class ApiConfig(Shared, Protocol):
    """What an API process reads: its section beside the `Shared` ones
    (`herald_cli.settings.Settings` composes them all)."""

    @property
    def log_level(self) -> str: ...
    @property
    def provider(self) -> ProviderSettings: ...
    @property
    def callbacks(self) -> CallbackSettings: ...
    @property
    def billing(self) -> BillingSettings: ...
    @property
    def api(self) -> ApiSettings: ...
    @property
    def campaigns(self) -> CampaignSettings: ...
