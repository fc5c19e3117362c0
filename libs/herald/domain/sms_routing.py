"""SMS providers and routes as configuration: which providers may carry a message, in what order.

A **route** names, for a destination country (or `*`, every other) and optionally one tenant,
an ordered list of providers and a strategy: `ordered` tries them as listed, `cost` cheapest
first by each provider's price for the country (its `*` price otherwise; a provider with no
price for either comes last), ties as listed. The most specific route wins: the tenant's for
the country, the tenant's `*`, the country's, then `*`. Disabled providers are left out.

Whether a provider is tried at all, or skipped while unhealthy, is the worker's (`herald_worker.
sms.health`); this module only ranks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from enum import StrEnum

import msgspec

ANY_COUNTRY = "*"


class ProviderKind(StrEnum):
    SMPP = "smpp"
    """SMPP 3.4 over TCP: `endpoint` is host:port, `account` the system_id, the secret its password."""
    TWILIO = "twilio"
    """An HTTP aggregator in Twilio's format: `endpoint` the API's base URL, `account` the
    Account SID, the secret its auth token (which also signs its status callbacks)."""
    CARRIER = "carrier"
    """Herald's simulated carrier (`herald carrier-sim`): `endpoint` its base URL."""


class Strategy(StrEnum):
    ORDERED = "ordered"
    COST = "cost"


class SmsProvider(msgspec.Struct, frozen=True):
    """A provider as every process may see it: no secret."""

    name: str
    kind: ProviderKind
    endpoint: str
    account: str = ""
    sender: str = ""
    """The default sender (source address, `From`) when the tenant has none of its own."""
    rate_per_second: int = 0
    """Its capacity, held across workers (0: none)."""
    window: int = 10
    """SMPP: submits outstanding per bind."""
    binds: int = 1
    """SMPP: transceiver binds each worker holds."""
    prices: dict[str, int] = {}
    """Cost card: micro-units per segment by ISO country, `*` for the rest (routing only)."""
    enabled: bool = True

    def price(self, country: str | None) -> int | None:
        return self.prices.get(country or ANY_COUNTRY, self.prices.get(ANY_COUNTRY))


class Route(msgspec.Struct, frozen=True):
    country: str
    strategy: Strategy
    providers: tuple[str, ...]
    tenant_id: uuid.UUID | None = None

    @property
    def label(self) -> str:
        """The route's name in metrics and on the timeline: `GB`, `*`, `tenant:GB`."""
        return self.country if self.tenant_id is None else f"tenant:{self.country}"


def route_for(routes: Sequence[Route], tenant_id: uuid.UUID, country: str | None) -> Route | None:
    """The most specific route for a tenant's message to `country`; None when none applies."""
    best: tuple[int, Route] | None = None
    for route in routes:
        if route.tenant_id not in (None, tenant_id) or route.country not in (country, ANY_COUNTRY):
            continue
        rank = (2 if route.tenant_id is not None else 0) + (1 if route.country != ANY_COUNTRY else 0)
        if best is None or rank > best[0]:
            best = (rank, route)
    return None if best is None else best[1]


def ranked(route: Route, providers: Mapping[str, SmsProvider], country: str | None) -> list[SmsProvider]:
    """The route's enabled providers in the order they are tried."""
    listed = [p for name in route.providers if (p := providers.get(name)) is not None and p.enabled]
    if route.strategy is Strategy.ORDERED:
        return listed

    def cost(p: SmsProvider) -> tuple[bool, int]:
        price = p.price(country)
        return (price is None, price or 0)

    return sorted(listed, key=cost)  # stable: ties keep the route's order
