"""What the handlers need, built once at startup and injected as the `svc` dependency."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from herald.kafka.producer import Producer
from herald.kafka.topics import Names
from herald.settings import Settings
from herald_api.auth import KeyAuthenticator
from herald_api.ratelimit import FailedAuthLimiter
from herald_api.sending import Sender, TemplateCache


@dataclass(frozen=True)
class Services:
    settings: Settings
    names: Names
    pool: asyncpg.Pool
    producer: Producer
    """Accepted messages: a client waits for its ack (`kafka.linger_ms`)."""
    authenticator: KeyAuthenticator
    failed_auth: FailedAuthLimiter
    """Failed authentications per client address (keys, admin token, provider signatures)."""
    templates: TemplateCache
    sender: Sender
