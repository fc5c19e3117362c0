"""Meta's error codes, decided on `error.code` (never the HTTP status), mapped onto Herald's outcomes.

Throttling codes from pywa's errors module; the rest from Meta's Cloud API error-code page as
summarised in `../shared/PROVIDERS.md`. A code not listed is a refusal (`rejected`) when Meta
answered 4xx, and "unavailable" (retried) when it answered 5xx: the adapter logs the code so a
new one can be added here.
"""

from __future__ import annotations

from enum import StrEnum

from herald.domain.reasons import Reason


class Kind(StrEnum):
    THROTTLED = "throttled"
    """The phone number's throughput or the account's rate: that number's gate backs off."""
    RECIPIENT_BUSY = "recipient_busy"
    """Pair rate: this user was sent to too fast; the recipient waits, nobody else."""
    TENANT_LIMITED = "tenant_limited"
    """Spam rate or quality limit: the tenant's sends slow down (retried much later)."""
    PERMANENT = "permanent"
    CREDENTIALS = "credentials"
    """The token expired or the account is locked: fail fast, suspend the account's sends, alert."""
    UNAVAILABLE = "unavailable"


_KINDS: dict[int, tuple[Kind, Reason]] = {
    4: (Kind.THROTTLED, Reason.THROTTLED),  # application request limit
    80007: (Kind.THROTTLED, Reason.THROTTLED),  # WhatsApp Business Account rate limit
    130429: (Kind.THROTTLED, Reason.THROTTLED),  # Cloud API throughput
    131056: (Kind.RECIPIENT_BUSY, Reason.RECIPIENT_BUSY),  # business-to-user pair rate
    131048: (Kind.TENANT_LIMITED, Reason.THROTTLED),  # spam rate limit hit
    131064: (Kind.TENANT_LIMITED, Reason.THROTTLED),
    190: (Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),  # access token expired or invalid
    0: (Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),  # AuthException
    10: (Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),  # permission denied
    131031: (Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),  # business account locked
    368: (Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),  # temporarily blocked for policy
    131026: (Kind.PERMANENT, Reason.UNDELIVERABLE),
    131047: (Kind.PERMANENT, Reason.OUTSIDE_SERVICE_WINDOW),  # re-engagement: 24 h window closed
    131050: (Kind.PERMANENT, Reason.OPTED_OUT),  # the user stopped marketing messages
    131051: (Kind.PERMANENT, Reason.REJECTED),  # unsupported message type
    131021: (Kind.PERMANENT, Reason.INVALID_NUMBER),  # recipient cannot be the sender
    100: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # invalid parameter
    132000: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # parameter count mismatch
    132001: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # template does not exist
    132005: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # hydrated text too long
    132007: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # format character policy violated
    132012: (Kind.PERMANENT, Reason.TEMPLATE_INVALID),  # parameter format mismatch
    132015: (Kind.PERMANENT, Reason.TEMPLATE_PAUSED),
    132016: (Kind.PERMANENT, Reason.TEMPLATE_DISABLED),
    1: (Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),  # API unknown
    2: (Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),  # API service
    131000: (Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),  # something went wrong
    131016: (Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),  # service unavailable
}


def classify(code: int, http_status: int) -> tuple[Kind, Reason]:
    """What an error with this `error.code` means for the message, and its reason."""
    known = _KINDS.get(code)
    if known is not None:
        return known
    if http_status >= 500:
        return Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE
    return Kind.PERMANENT, Reason.REJECTED


def known(code: int) -> bool:
    return code in _KINDS


def receipt_reason(code: int) -> Reason:
    """The reason a `failed` status webhook gives its message: the code's permanent reason, else
    `undeliverable` (a status arrives after Meta took the message: it is never retried)."""
    kind, reason = _KINDS.get(code, (Kind.PERMANENT, Reason.UNDELIVERABLE))
    return reason if kind is Kind.PERMANENT else Reason.UNDELIVERABLE
