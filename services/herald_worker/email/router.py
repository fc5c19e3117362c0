"""Email routing: the configured providers in order (`email.providers`: `smtp`, `ses`), with
the failover rules of SMS routing (`herald_worker.sms.router`): the next provider is tried only
when the one tried certainly did not take the mail (`RetryableError.untaken`); an attempt whose
answer was lost pins the message to that provider (`MessageEnvelope.provider_pin`), so two
providers never both send it."""

from __future__ import annotations

import msgspec

from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald_worker.providers.base import Accepted, Provider, RetryableError


class EmailRouter:
    name = "email"

    def __init__(self, providers: list[Provider]) -> None:
        if not providers:
            raise ValueError("email needs at least one provider")
        self._providers = providers
        self._by_name = {p.name: p for p in providers}

    async def send(self, message: OutboundMessage) -> Accepted:
        if message.provider_pin is not None:
            pinned = self._by_name.get(message.provider_pin)
            if pinned is None:  # the provider that may have it is no longer configured: it waits, and expires
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, pinned=message.provider_pin)
            return await self._attempt(pinned, message, pinned=True)
        last: RetryableError | None = None
        for provider in self._providers:
            try:
                return await self._attempt(provider, message, pinned=False)
            except RetryableError as exc:
                if not exc.untaken:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _attempt(self, provider: Provider, message: OutboundMessage, *, pinned: bool) -> Accepted:
        try:
            accepted = await provider.send(message)
        except RetryableError as exc:
            if exc.untaken and not pinned:
                raise
            raise RetryableError(exc.reason, exc.retry_after, pinned=provider.name, lost=exc.lost) from exc
        return accepted if accepted.provider else msgspec.structs.replace(accepted, provider=provider.name)

    async def close(self) -> None:
        for provider in self._providers:
            await provider.close()
