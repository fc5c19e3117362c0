"""The SES double's settings section (`HERALD_SES_SIM_*`)."""

from __future__ import annotations

import msgspec


class SesSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8096
    """SES v2's API (`/v2/email/…`, forwarded to moto) and the controls (`/_sim/…`)."""
    notify_url: str = ""
    """Where SES's events go through SNS (Herald's `/v1/providers/ses/notifications`); empty: none."""
    topic_arn: str = "arn:aws:sns:eu-west-1:123456789012:herald-ses-events"
    notify_delay_ms: int = 50
    """From a send to its events; a notification refused is delivered again with a doubling delay."""
    kept: int = 10_000
    """The last mails sent kept for `/_sim/sent`."""
