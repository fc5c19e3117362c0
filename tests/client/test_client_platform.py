"""herald_client against a running Herald (the integration fixtures: real API, broker, database,
worker, sinks and carrier-sim), and its model against the OpenAPI document the server serves."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import typing
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request, Response, post

import herald_client
from herald.embedded import free_port
from herald.embedded.broker import EmbeddedBroker
from herald.kafka.admin import ensure_topics
from herald.kafka.topics import Names
from herald_cli.settings import Settings
from herald_client import (
    AsyncClient,
    BadRequest,
    Client,
    InvalidSignature,
    MessageCreate,
    NotFound,
    Search,
    Status,
    TemplateCreate,
    TemplateRef,
    _calls,
    models,
    verify_callback,
)
from tests.eventually import eventually
from tests.integration.harness import Platform, Served

OTP = TemplateRef("otp", "en")


def _otp(to: str, **fields: Any) -> MessageCreate:
    return MessageCreate(to=to, channel=models.Channel.SMS, template=OTP, params={"code": "123456"}, **fields)


async def _key(platform: Platform, **tenant: Any) -> tuple[str, str]:
    tenant_id, auth = await platform.tenant_with_key(**tenant)
    return tenant_id, auth["authorization"].removeprefix("Bearer ")


async def _delivered(client: AsyncClient, message_id: Any) -> models.Message:
    async def probe() -> models.Message | None:
        try:
            return await client.message(message_id)
        except NotFound:  # the status projection lags the 202 by a moment, as the 404 says
            return None

    found = await eventually(probe, lambda m: m is not None and m.status is Status.DELIVERED, "delivered", seconds=30)
    assert found is not None
    return found


async def test_templates_sends_and_reads_through_the_async_client(platform: Platform) -> None:
    _, key = await _key(platform)
    async with AsyncClient(platform.url, key) as herald:
        created = await herald.create_template(
            TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Your code is {{code}}")
        )
        assert (created.version, created.placeholders) == (1, ["code"])
        assert [t.name for t in await herald.templates()] == ["otp"]
        accepted = await herald.send(_otp("+447400123456", reference="login-7"))
        message = await _delivered(herald, accepted.id)
        assert [e.status for e in message.events] == [Status.ACCEPTED, Status.SENT, Status.DELIVERED]
        assert message.reference == "login-7"
        await _delivered(herald, (await herald.send(_otp("+447400123458", reference="login-8"))).id)
        found = [m async for m in herald.messages(Search(reference="login-7"), page_size=1)]
        assert [(m.id, m.status, m.reference) for m in found] == [(accepted.id, Status.DELIVERED, "login-7")]
        listed = [m.id async for m in herald.messages(page_size=1)]
        assert len(listed) == 2
        assert listed[1] == accepted.id  # newest first, one page at a time
        limits = await herald.limits()
        assert (limits.tier, limits.recipients_used_24h) == ("standard", 2)
        with pytest.raises(BadRequest) as caught:
            await herald.send(_otp("+4474001"))
        assert (caught.value.code, caught.value.status, [f.field for f in caught.value.fields]) == (
            "invalid_recipient", 422, ["to"],
        )  # fmt: skip
        with pytest.raises(NotFound):
            await herald.template("nope", "en")


async def test_the_blocking_client_sends_and_reads(platform: Platform) -> None:
    """The same calls, blocking (in a thread: the platform runs in this test's event loop)."""
    _, key = await _key(platform)

    def blocking() -> tuple[models.MessageAccepted, models.Limits]:
        with Client(platform.url, key) as herald:
            herald.create_template(
                TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Code {{code}}")
            )
            return herald.send(_otp("+447400123457")), herald.limits()

    accepted, limits = await asyncio.to_thread(blocking)
    assert limits.recipients_used_24h == 1
    async with AsyncClient(platform.url, key) as herald:
        await _delivered(herald, accepted.id)


async def test_a_batch_of_2500_with_bad_items_maps_each_result_to_the_callers_index(platform: Platform) -> None:
    _, key = await _key(platform, tier="enterprise")
    bad = {7, 999, 1000, 1001, 2499}
    messages = [_otp("+4474001" if i in bad else f"+44740{i:07d}") for i in range(2_500)]
    async with AsyncClient(platform.url, key) as herald:
        await herald.create_template(
            TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Code {{code}}")
        )
        result = await herald.send_batch(messages)
        assert (result.accepted, result.rejected) == (2_495, 5)
        assert [r.index for r in result.results] == list(range(2_500))
        assert {r.index for r in result.results if r.error is not None} == bad
        assert {r.error.code for r in result.results if r.error is not None} == {"invalid_recipient"}
        last = next(r for r in reversed(result.results) if r.id is not None)
        await _delivered(herald, last.id)


async def test_a_503_from_a_stalled_broker_is_retried_and_delivered_once(settings: Settings) -> None:
    """The broker stops answering (SIGSTOP) for longer than the produce timeout: the API answers
    503 broker_unavailable with Retry-After, ambiguous by nature (the broker may append the record
    when it resumes). The client retries with the same idempotency key: one message, one send."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    kafka = msgspec.structs.replace(settings.kafka, bootstrap=broker.bootstrap, request_timeout_ms=1500)
    settings = msgspec.structs.replace(settings, kafka=kafka)
    await ensure_topics(kafka, Names(kafka.topic_prefix))
    platform = await Platform(settings).start()
    try:
        _, key = await _key(platform)
        async with AsyncClient(platform.url, key, retry=herald_client.RetryPolicy(attempts=10)) as herald:
            await herald.create_template(
                TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Code {{code}}")
            )
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            loop.call_later(4.0, os.kill, broker.pid, signal.SIGCONT)
            started = time.monotonic()
            accepted = await herald.send(_otp("+447400123458"))
            assert time.monotonic() - started >= 3.5, "the send did not wait out the stall"
            await _delivered(herald, accepted.id)
        sends = await platform.sends_settled()
        assert sends == {str(accepted.id): 1}
    finally:
        if broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        await platform.stop()
        broker.kill()


class _Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []

        @post("/cb", status_code=200)
        async def receive(request: Request) -> Response[str]:  # type: ignore[type-arg]
            self.received.append((await request.body(), request.headers.get("herald-signature", "")))
            return Response("ok")

        self.app = Litestar([receive], openapi_config=None, logging_config=None)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[_Receiver, str]]:
    r, port = _Receiver(), free_port()
    served = Served(r.app, port)
    await served.start()
    yield r, f"http://127.0.0.1:{port}/cb"
    await served.stop()


async def test_a_real_callback_is_verified_and_a_forged_one_refused(
    platform: Platform, receiver: tuple[_Receiver, str]
) -> None:
    rec, url = receiver
    tenant = await platform.tenant(callback_url=url)
    key = await platform.key(tenant["id"])
    async with AsyncClient(platform.url, key) as herald:
        await herald.create_template(
            TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Code {{code}}")
        )
        accepted = await herald.send(_otp("+447400123459"))
    await eventually(lambda: len(rec.received), lambda n: n >= 2, "two callbacks", seconds=30)
    events = [verify_callback(body, header, tenant["callback_secret"]) for body, header in rec.received]
    assert [(e.message_id, e.status) for e in events] == [(accepted.id, Status.SENT), (accepted.id, Status.DELIVERED)]
    body, header = rec.received[-1]
    with pytest.raises(InvalidSignature):
        verify_callback(body.replace(b"delivered", b"failed"), header, tenant["callback_secret"])
    with pytest.raises(InvalidSignature):
        verify_callback(body, header, "whsec_not_the_tenants")


# --- the model against the served OpenAPI document ----------------------------------------------
COMPONENTS: dict[type[msgspec.Struct], str] = {
    models.MessageCreate: "MessageCreate", models.MessageAccepted: "MessageAccepted", models.Message: "MessageOut",
    models.Event: "EventOut", models.Price: "herald_api_schemas_Price", models.BatchAccepted: "BatchAccepted",
    models.BatchItemResult: "BatchItemResult", models.ItemError: "ItemError", models.TemplateCreate: "TemplateCreate",
    models.Template: "TemplateOut", models.TemplateUsed: "TemplateUsed", models.TemplateRef: "TemplateRef",
    models.Limits: "LimitsOut", models.Usage: "UsageOut", models.UsageLine: "UsageLine",
    models.UsageTotal: "UsageTotal", models.WhatsAppParts: "WhatsAppPartsIn", models.Button: "ButtonIn",
    models.WhatsAppLimits: "WhatsAppLimitsOut", models.PhoneNumber: "PhoneNumberOut",
    models.EmailParts: "EmailPartsIn", models.MessageSummary: "MessageSummaryOut", models.MessagePage: "MessagePage",
    models.Cancellation: "CancellationOut",
}  # fmt: skip
REQUESTS = {models.MessageCreate, models.TemplateCreate, models.TemplateRef, models.WhatsAppParts, models.Button,
            models.EmailParts}  # fmt: skip


async def test_the_clients_model_matches_the_served_openapi_document(api: Platform) -> None:
    """Every field of every client Struct exists on the server with the same name; the client
    requires nothing the server may leave out of an answer, and requires everything the server
    requires of a request; the enums carry the same values; every call is a served route."""
    document = (await api.http.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for struct, name in COMPONENTS.items():
        schema = schemas[name]
        info = msgspec.structs.fields(struct)
        assert {f.encode_name for f in info} == set(schema["properties"]), name
        client_required = {f.encode_name for f in info if f.required}
        server_required = set(schema.get("required", []))
        if struct in REQUESTS:
            assert server_required <= client_required, name
        else:
            assert client_required <= server_required, name
    for enum, name in ((models.Channel, "Channel"), (models.Category, "Category"), (models.Status, "Status")):
        assert {e.value for e in enum} == set(schemas[name]["enum"]), name
    calls = [
        _calls.send(_otp("+447400123456")), *_calls.batches([_otp("+447400123456")]), _calls.message(
            "0193b3d2-7c1e-7c3a-9f10-2b8c3c6e7a01"), _calls.create_template(
            TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "x")),
        _calls.templates(), _calls.template("otp", "en"), _calls.delete_template("otp", "en"), _calls.limits(),
        _calls.usage("2026-12"), _calls.search(_calls.Search(status="failed")),
        _calls.cancel("0193b3d2-7c1e-7c3a-9f10-2b8c3c6e7a01"),
    ]  # fmt: skip
    routes = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    for call in calls:
        template = _route_template(call.path, {p for _, p in routes})
        assert (call.method, template) in routes, call.path


def _route_template(path: str, known: set[str]) -> str:
    """The served path template (`/v1/messages/{message_id}`) a concrete path instantiates."""
    if path in known:
        return path
    parts = path.split("/")
    for candidate in known:
        other = candidate.split("/")
        if len(other) == len(parts) and all(o == p or o.startswith("{") for o, p in zip(other, parts, strict=True)):
            return candidate
    return path


def test_the_client_package_depends_on_nothing_of_the_servers() -> None:
    """Installable alone: no module of the client imports Herald's server code."""
    import ast
    from pathlib import Path

    source = Path(typing.cast(str, herald_client.__file__)).parent
    for module in source.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m.split(".")[0] in {"herald", "herald_api", "herald_worker"}}, module


async def test_the_readme_quick_start_runs_as_written(platform: Platform) -> None:
    """The first code block of clients/python/README.md, with this platform's URL and a key."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "clients/python/README.md").read_text()
    quick_start = readme.split("```python\n", 1)[1].split("```", 1)[0]
    _, key = await _key(platform)
    async with AsyncClient(platform.url, key) as herald:
        await herald.create_template(
            TemplateCreate("otp", "en", models.Category.AUTHENTICATION, models.Channel.SMS, "Code {{code}}")
        )
    code = quick_start.replace("http://127.0.0.1:8080", platform.url).replace("hk_live_…", key)
    printed: list[tuple[object, ...]] = []
    await asyncio.to_thread(exec, code, {"print": lambda *values: printed.append(values)})
    [(message_id, status)] = printed
    assert status is Status.ACCEPTED
    async with AsyncClient(platform.url, key) as herald:
        await _delivered(herald, message_id)
