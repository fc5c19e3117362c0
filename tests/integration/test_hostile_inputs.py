"""Hostile input at every inbound endpoint: each answer is a 4xx problem (never a 500, never a
traceback in the log) and changes nothing. Findings of the security review (issue #29) are
named where a test reproduces one; provider-side forgeries (receipts naming another tenant,
out-of-range times, replays) are in test_receipts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from herald import signing
from herald.embedded import free_port
from herald_api.app import create_app
from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform


def _is_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.json()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    yield
    assert not [r for r in caplog.records if r.exc_info], "a hostile request logged a traceback"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("v1", ["\u00e9", "\u2603" * 64, "0" * 63 + "\u00e9"])
async def test_a_non_ascii_provider_signature_is_401(api: Platform, v1: str, no_tracebacks: None) -> None:
    """Finding 6: `compare_digest` on a non-ASCII str raised TypeError: a 500 and a traceback
    per request, to anyone. httpx sends header values as UTF-8 bytes, as an attacker's client does;
    a current timestamp gets the check as far as the comparison."""
    header = f"t={int(time.time())},v1={v1}"
    r = await api.http.post(
        "/v1/providers/carrier-sim/receipts", content=b"{}", headers={"x-provider-signature": header.encode()}
    )
    _is_problem(r, 401, "invalid_signature")


async def test_a_deeply_nested_batch_item_is_400(api: Platform, no_tracebacks: None) -> None:
    """Finding 6: a batch item nested thousands deep raised RecursionError in the decoder (500)."""
    _, auth = await api.tenant_with_key()
    deep = "[" * 20_000 + "]" * 20_000
    body = '{"messages": [{"to": ' + deep + "}]}"
    r = await api.http.post("/v1/messages/batch", content=body, headers={**auth, "content-type": "application/json"})
    _is_problem(r, 400, "malformed_request")


async def test_a_name_with_a_trailing_newline_is_refused(api: Platform) -> None:
    """Finding 7: `$` matched before a trailing newline, so a template named "otp\\n" was stored."""
    _, auth = await api.tenant_with_key()
    template = {"name": "otp\n", "language": "en", "category": "authentication", "channel": "sms",
                "body": "Your code is {{code}}"}  # fmt: skip
    r = await api.http.post("/v1/templates", json=template, headers=auth)
    _is_problem(r, 422, "validation_failed")
    r = await api.http.post("/v1/templates", json={**template, "name": "otp", "language": "en\n"}, headers=auth)
    _is_problem(r, 422, "validation_failed")
    assert (await api.http.get("/v1/templates", headers=auth)).json() == []


@pytest.mark.parametrize("month", ["2026-12\n", "2026-12%0A", "2026-12\r\n"])
async def test_a_month_with_a_trailing_newline_is_refused_before_any_export_byte(api: Platform, month: str) -> None:
    """Finding 7: `month=2026-12%0A` passed the pattern and broke the admin export mid-response."""
    r = await api.http.get("/v1/admin/usage", params={"month": month, "format": "csv"}, headers=api.admin)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_oversize_and_malformed_bodies_are_problems(api: Platform, no_tracebacks: None) -> None:
    _, auth = await api.tenant_with_key()
    headers = {**auth, "content-type": "application/json"}
    big = b'{"to": "' + b"1" * (api.settings.api.max_body_bytes + 1) + b'"}'
    _is_problem(await api.http.post("/v1/messages", content=big, headers=headers), 413, "payload_too_large")
    _is_problem(await api.http.post("/v1/messages", content=b"{", headers=headers), 400, "malformed_request")
    _is_problem(await api.http.post("/v1/messages", content=b"\xff\xfe", headers=headers), 400, "malformed_request")
    signed = {"x-provider-signature": signing.sign(api.settings.provider.receipt_secret, big)}
    r = await api.http.post("/v1/providers/carrier-sim/receipts", content=big, headers=signed)
    _is_problem(r, 413, "payload_too_large")


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[Platform]:
    """The API alone with tight limits: a 1 s read deadline, 8 connections, 3 failed logins a minute."""
    api = msgspec.structs.replace(
        settings.api, request_read_timeout_seconds=1.0, max_connections=8, failed_auth_per_minute=3
    )
    running = await Platform(msgspec.structs.replace(settings, api=api)).start(worker=False, sinks=False, sim=False)
    yield running
    await running.stop()


async def test_a_slow_request_is_cut_off_at_the_read_deadline(guarded: Platform) -> None:
    """Finding 8: a client trickling its headers (slowloris) held its socket indefinitely."""
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.settings.api.port)
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = False
    with contextlib.suppress(ConnectionError):
        for _ in range(40):  # one header byte every 0.1 s: never a complete request
            writer.write(b"X")
            await writer.drain()
            if await _closed(reader, 0.1):
                closed = True
                break
    assert closed, "the trickling connection was still open after 4 s"
    assert 0.9 <= time.monotonic() - started < 3.0
    writer.close()
    # A normal request on a new connection is served as always.
    assert (await guarded.http.get("/healthz")).status_code == 200


async def _closed(reader: asyncio.StreamReader, wait: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), wait) == b""
    except TimeoutError:
        return False


async def test_connections_beyond_the_cap_are_refused_with_503(guarded: Platform) -> None:
    """Finding 8: no cap on connections per API process."""
    idle = [await asyncio.open_connection("127.0.0.1", guarded.settings.api.port) for _ in range(8)]
    try:
        async with httpx.AsyncClient(base_url=guarded.url) as fresh:
            assert (await fresh.get("/healthz")).status_code == 503
    finally:
        for _, writer in idle:
            writer.close()
    await eventually(lambda: _status(guarded, "/healthz"), lambda s: s == 200, "served again", seconds=5)


async def _status(platform: Platform, path: str) -> int:
    async with httpx.AsyncClient(base_url=platform.url) as client:
        return (await client.get(path)).status_code


async def test_failed_authentications_are_limited_per_client_before_checking_credentials(guarded: Platform) -> None:
    """Finding 10: the admin token could be guessed without limit. After 3 failures a minute the
    address is refused, even with the right token, until the bucket refills."""
    for _ in range(3):
        r = await guarded.http.get("/v1/admin/rate-cards", headers={"authorization": "Bearer guess"})
        _is_problem(r, 401, "invalid_admin_token")
    r = await guarded.http.get("/v1/admin/rate-cards", headers={"authorization": "Bearer guess"})
    _is_problem(r, 429, "too_many_failed_attempts")
    assert int(r.headers["retry-after"]) >= 1
    _is_problem(await guarded.http.get("/v1/admin/rate-cards", headers=guarded.admin), 429, "too_many_failed_attempts")
    r = await guarded.http.get("/v1/limits", headers={"authorization": "Bearer hk_live_x_y"})
    _is_problem(r, 429, "too_many_failed_attempts")  # the same address, on the tenant API too


async def test_the_admin_api_can_have_a_listener_of_its_own(settings: Settings) -> None:
    """Finding 10: the admin port served the tenant API too. With `api.admin_port`, the admin
    routes answer only there and the tenant and provider routes only on the main port."""
    admin_port = free_port()
    api = msgspec.structs.replace(settings.api, admin_port=admin_port)
    app = create_app(msgspec.structs.replace(settings, api=api))
    # Two listeners on one server, bound as `herald api` binds them (services/herald_cli/processes.py).
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.api.port, log_level="warning", log_config=None)
    sockets = [config.bind_socket(), uvicorn.Config(app, host="127.0.0.1", port=admin_port).bind_socket()]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        await eventually(lambda: server.started, bool, "the server started", seconds=10)
        admin = {"authorization": f"Bearer {settings.api.admin_token}"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}") as public,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as private,
        ):
            created = await private.post("/v1/admin/tenants", headers=admin, json={"name": "A", "tier": "standard"})
            assert created.status_code == 201, created.text
            _is_problem(await public.get("/v1/admin/rate-cards", headers=admin), 404, "route_not_found")
            assert (await private.get("/v1/admin/rate-cards", headers=admin)).status_code == 200
            key = await private.post(
                f"/v1/admin/tenants/{created.json()['id']}/keys", headers=admin, json={"kind": "live"}
            )
            tenant = {"authorization": f"Bearer {key.json()['key']}"}
            assert (await public.get("/v1/limits", headers=tenant)).status_code == 200
            _is_problem(await private.get("/v1/limits", headers=tenant), 404, "route_not_found")
            for client in (public, private):
                assert (await client.get("/healthz")).status_code == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
