"""The API's settings section (`HERALD_API_*`) and what an API process reads."""

from __future__ import annotations

from typing import Protocol

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
