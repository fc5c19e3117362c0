"""Email routing's failover rules (`herald_worker.email.router`), with providers that answer as told."""

from __future__ import annotations

import pytest

from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald_worker.email.router import EmailRouter
from herald_worker.providers.base import Accepted, PermanentError, RetryableError
from tests.unit.fakes import outbound


class Told:
    """A provider whose next answers are given: an exception to raise, or None to accept."""

    def __init__(self, name: str, *answers: Exception | None) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls = 0

    async def send(self, message: OutboundMessage) -> Accepted:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return Accepted(provider_message_id=f"{self.name}-1")

    async def close(self) -> None:
        pass


async def test_the_first_provider_that_takes_the_mail_is_recorded_as_the_sender() -> None:
    smtp, ses = Told("smtp"), Told("ses")
    accepted = await EmailRouter([smtp, ses]).send(outbound())
    assert (accepted.provider, accepted.provider_message_id, smtp.calls, ses.calls) == ("smtp", "smtp-1", 1, 0)


async def test_a_provider_that_certainly_did_not_take_it_passes_it_on() -> None:
    smtp, ses = Told("smtp", RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True)), Told("ses")
    accepted = await EmailRouter([smtp, ses]).send(outbound())
    assert (accepted.provider, smtp.calls, ses.calls) == ("ses", 1, 1)


async def test_a_lost_answer_pins_the_mail_to_that_provider_and_the_next_attempt_goes_there_alone() -> None:
    smtp, ses = Told("smtp", RetryableError(Reason.PROVIDER_UNAVAILABLE)), Told("ses")
    router = EmailRouter([smtp, ses])
    with pytest.raises(RetryableError) as raised:
        await router.send(outbound())
    assert (raised.value.pinned, ses.calls) == ("smtp", 0)
    smtp.answers = [RetryableError(Reason.THROTTLED, untaken=True)]  # pinned: even an untaken answer stays
    with pytest.raises(RetryableError) as again:
        await router.send(outbound(provider_pin="smtp"))
    assert (again.value.pinned, again.value.reason, ses.calls) == ("smtp", Reason.THROTTLED, 0)
    assert (await router.send(outbound(provider_pin="smtp"))).provider == "smtp"
    with pytest.raises(RetryableError) as gone:  # the pinned provider is no longer configured
        await EmailRouter([ses]).send(outbound(provider_pin="smtp"))
    assert (gone.value.pinned, ses.calls) == ("smtp", 0)


async def test_a_refusal_is_final_and_every_provider_untaken_is_the_last_ones_reason() -> None:
    smtp, ses = Told("smtp", PermanentError(Reason.REJECTED)), Told("ses")
    with pytest.raises(PermanentError):
        await EmailRouter([smtp, ses]).send(outbound())
    assert ses.calls == 0
    both = [Told("smtp", RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True)),
            Told("ses", RetryableError(Reason.THROTTLED, untaken=True))]  # fmt: skip
    with pytest.raises(RetryableError) as raised:
        await EmailRouter(both).send(outbound())
    assert (raised.value.reason, raised.value.untaken, raised.value.pinned) == (Reason.THROTTLED, True, None)
