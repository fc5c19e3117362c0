"""The WhatsApp double's settings section (`HERALD_WHATSAPP_SIM_*`)."""

from __future__ import annotations

import msgspec


class WhatsAppSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8091
    latency_ms: int = 5
    """How long a send takes to answer."""
    status_delay_ms: int = 50
    """From a send's answer to its `sent` status; `delivered` and `read` follow at the same pace."""
    webhook_batch_max: int = 100
    """Statuses per webhook POST at most (Meta batches several per POST)."""
    webhook_batch_ms: int = 20
    review_delay_ms: int = 300
    """From a template's submission to Meta's verdict."""
    default_throughput: int = 80
    """Messages per second a new phone number may send (Meta's default); beyond it, 130429."""
    pair_rate_seconds: float = 0.0
    """Sends to one user from one number closer than this are refused with 131056 (0: off;
    Meta's is about 6 s)."""
