"""The HTTP aggregator double's settings section (`HERALD_TWILIO_SIM_*`)."""

from __future__ import annotations

import msgspec


class TwilioSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8094
    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: str = "herald-dev-twilio-auth-token"  # noqa: S105 - the double's own, for development
    status_delay_ms: int = 50
    """From a send's answer to its `sent` callback; `delivered` follows at the same pace."""
