"""The sink provider for test keys: the whole pipeline runs, nothing leaves Herald."""

from __future__ import annotations

from herald.domain.records import OutboundMessage
from herald_worker.providers.base import Accepted


class SinkProvider:
    name = "sink"

    async def send(self, message: OutboundMessage) -> Accepted:
        return Accepted(provider_message_id=f"sink-{message.id.hex[:16]}", delivered=True)

    async def close(self) -> None:
        return None
