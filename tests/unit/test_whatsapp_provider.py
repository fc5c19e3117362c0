"""The worker's WhatsApp adapter against a scripted Graph API: what each of Meta's answers does
to the message, the account and the tenant (the integration tests run it against the double)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain.models import Channel, TemplateStatus
from herald.domain.reasons import Reason
from herald.domain.whatsapp import Account, AccountStatus, MessagingTier, PhoneNumber, Secrets
from herald.whatsapp.graph import GraphError
from herald.whatsapp.templates import encode_values
from herald.whatsapp.wire import SendRequest, SendResponse, SentMessage
from herald_worker.provider_gate import ProviderGate
from herald_worker.providers.base import PermanentError, Postponed, RetryableError
from herald_worker.providers.whatsapp import TENANT_LIMITED_SECONDS, WhatsAppProvider
from tests.unit.fakes import Clock, outbound


class Graph:
    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, SendRequest]] = []

    async def send(self, number: str, token: str, request: SendRequest) -> SendResponse:
        self.sent.append((number, request))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return SendResponse(messages=[SentMessage(id=f"wamid.{len(self.sent)}")])

    async def close(self) -> None: ...


class Accounts:
    def __init__(self, status: AccountStatus = AccountStatus.ACTIVE) -> None:
        self.status = status
        self.suspended: list[int] = []

    async def get(self, tenant_id: uuid.UUID) -> tuple[Account, Secrets]:
        now = datetime.now(UTC)
        account = Account(tenant_id, "1001", "Acme", (PhoneNumber("2002"),), self.status, MessagingTier.TIER_250,
                          now, now)  # fmt: skip
        return account, Secrets("EAAG-token", "app-secret")

    async def suspend(self, account: Account, code: int) -> None:
        self.suspended.append(code)


class Templates:
    def __init__(self, status: TemplateStatus = TemplateStatus.APPROVED) -> None:
        self.status = status

    async def get(self, *_: Any) -> TemplateStatus:
        return self.status


def provider(graph: Graph, accounts: Accounts | None = None, templates: Templates | None = None,
             clock: Clock | None = None) -> WhatsAppProvider:  # fmt: skip
    return WhatsAppProvider(
        graph, accounts or Accounts(), templates or Templates(),  # type: ignore[arg-type]
        lambda n: ProviderGate(f"whatsapp:{n.id}", 0, None), 2.0, clock or Clock(),
    )  # fmt: skip


def message(tenant_id: uuid.UUID | None = None) -> Any:
    body = encode_values("Flight {{flight}}", {"flight": "BA117"})
    return outbound(channel=Channel.WHATSAPP, body=body, tenant_id=tenant_id or uuid.uuid4(),
                    template_name="flight_update", template_language="en_US")  # fmt: skip


async def test_a_send_carries_the_template_its_parameters_and_herald_s_id() -> None:
    graph = Graph()
    m = message()
    accepted = await provider(graph).send(m)
    ((number, request),) = graph.sent
    assert (number, request.to, request.biz_opaque_callback_data) == ("2002", m.to.lstrip("+"), str(m.id))
    assert [p.text for p in request.template.components[0].parameters] == ["BA117"]
    assert (accepted.provider_message_id, accepted.provider) == ("wamid.1", "whatsapp:1001")


async def test_a_spam_limit_holds_that_tenants_next_sends_and_no_one_elses() -> None:
    clock = Clock()
    graph = Graph(GraphError(400, 131048, "spam rate limit hit"))
    whatsapp, tenant = provider(graph, clock=clock), uuid.uuid4()
    with pytest.raises(RetryableError) as refused:
        await whatsapp.send(message(tenant))
    assert (refused.value.reason, refused.value.retry_after) == (Reason.THROTTLED, TENANT_LIMITED_SECONDS)
    clock.now += 10
    with pytest.raises(RetryableError) as held:
        await whatsapp.send(message(tenant))
    assert held.value.retry_after == pytest.approx(TENANT_LIMITED_SECONDS - 10)
    assert len(graph.sent) == 1  # Meta was not asked again for that tenant
    await whatsapp.send(message())  # another tenant goes
    clock.now += TENANT_LIMITED_SECONDS
    await whatsapp.send(message(tenant))  # and the tenant again once the minute is over
    assert len(graph.sent) == 3


async def test_an_expired_token_suspends_the_account_and_postpones() -> None:
    accounts = Accounts()
    with pytest.raises(Postponed) as postponed:
        await provider(Graph(GraphError(401, 190, "Session has expired")), accounts).send(message())
    assert (postponed.value.reason, postponed.value.seconds, accounts.suspended) == (
        Reason.ACCOUNT_SUSPENDED,
        2.0,
        [190],
    )
    graph = Graph()
    with pytest.raises(Postponed):  # a suspended account's message waits without asking Meta
        await provider(graph, Accounts(AccountStatus.SUSPENDED)).send(message())
    assert graph.sent == []


@pytest.mark.parametrize(("status", "reason"), [(TemplateStatus.PAUSED, Reason.TEMPLATE_PAUSED),
                                                (TemplateStatus.DISABLED, Reason.TEMPLATE_DISABLED)])  # fmt: skip
async def test_a_paused_or_disabled_template_fails_unsent(status: TemplateStatus, reason: Reason) -> None:
    graph = Graph()
    with pytest.raises(PermanentError) as failed:
        await provider(graph, templates=Templates(status)).send(message())
    assert (failed.value.reason, graph.sent) == (reason, [])


@pytest.mark.parametrize(
    ("error", "raised", "reason"),
    [
        (GraphError(400, 130429, "Rate limit hit"), RetryableError, Reason.THROTTLED),
        (GraphError(400, 131056, "pair rate"), RetryableError, Reason.RECIPIENT_BUSY),
        (GraphError(503, 2, "Service unavailable"), RetryableError, Reason.PROVIDER_UNAVAILABLE),
        (GraphError(400, 132015, "Template is paused"), PermanentError, Reason.TEMPLATE_PAUSED),
        (GraphError(400, 131047, "Re-engagement message"), PermanentError, Reason.OUTSIDE_SERVICE_WINDOW),
        (GraphError(400, 4242, "a code Herald does not know"), PermanentError, Reason.REJECTED),
    ],
)
async def test_metas_answers_by_code(error: GraphError, raised: type[Exception], reason: Reason) -> None:
    with pytest.raises(raised) as caught:
        await provider(Graph(error)).send(message())
    assert caught.value.reason == reason  # type: ignore[attr-defined]
