"""Email for real: identities with DKIM keys verified in DNS, SMTP to a relay, one-click unsubscribe.

The relay and the DNS zone are `herald mail-sim` (aiosmtpd's SMTP server and a UDP DNS server),
which imports nothing of Herald's. Mail is checked as a receiving system would: its DKIM
signature verified with `dkimpy` against the record the tenant published, its headers read with
the standard library's email parser. The one-click unsubscribe request is RFC 8058 §3.2's
example (`POST` with the body `List-Unsubscribe=One-Click`).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import boto3
import dkim
import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from herald.embedded import free_port
from herald_cli.settings import Settings
from herald_client import SuppressionEvent, verify_callback
from herald_ses_sim.settings import SesSimSettings
from herald_sinks.reputation import report_complaint_rates
from tests.eventually import at_least, eventually
from tests.integration.harness import Platform, Served, wait_status_count
from tests.integration.test_callbacks import Receiver

SENDER = "news@mail.shop.example"
PROMO = {"channel": "email", "template": {"name": "promo", "language": "en"}}
RECEIPT = {"channel": "email", "template": {"name": "receipt", "language": "en"}}
CODE = {"channel": "email", "template": {"name": "code", "language": "en"}}


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    """The platform with the email doubles: the relay (and its DNS zone) and SES."""
    running = await Platform(settings).start(email=True)
    yield running
    await running.stop()


def _relay(platform: Platform) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.settings.mail_sim.port}", timeout=10)


async def _identity(platform: Platform, auth: dict[str, str], address: str = SENDER) -> dict[str, Any]:
    """An identity created, its DKIM record published in the double's DNS zone, and verified."""
    made = await platform.http.put("/v1/email/identities", headers=auth,
                                   json={"from_address": address, "from_name": "Shop"})  # fmt: skip
    assert made.status_code == 200, made.text
    (record,) = made.json()["dns_records"]
    async with _relay(platform) as relay:
        published = await relay.put("/_sim/dns", json={"name": record["name"], "value": record["value"]})
        assert published.status_code == 204
    verified = await platform.http.post(f"/v1/email/identities/{address}/verify", headers=auth)
    assert (verified.status_code, verified.json()["status"]) == (200, "verified"), verified.text
    return dict(verified.json())


async def _templates(platform: Platform, auth: dict[str, str]) -> None:
    for name, category, subject, body, html in (
        ("promo", "marketing", "{{name}}, 20% off this week", "Hi {{name}}, our sale starts now.",
         "<p>Hi <b>{{name}}</b>, our sale starts now.</p>"),
        ("receipt", "utility", "Your order {{order}}", "Order {{order}} for {{name}} is confirmed.",
         "<p>Order <i>{{order}}</i> for {{name}} is confirmed.</p>"),
        ("code", "authentication", "Your sign-in code", "Your code is {{code}}", None),
    ):  # fmt: skip
        r = await platform.http.post("/v1/templates", headers=auth, json={
            "name": name, "language": "en", "category": category, "channel": "email", "body": body,
            "email": {"subject": subject, **({"html": html} if html else {})},
        })  # fmt: skip
        assert r.status_code == 201, r.text


async def _sender(platform: Platform) -> tuple[str, dict[str, str], dict[str, Any]]:
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    identity = await _identity(platform, auth)
    await _templates(platform, auth)
    return tenant_id, auth, identity


def _dkim_valid(raw: bytes, identity: dict[str, Any]) -> bool:
    (record,) = identity["dns_records"]

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record["value"].encode() if name.decode().rstrip(".") == record["name"] else b""

    return bool(dkim.verify(raw, dnsfunc=dns))


async def _mails(platform: Platform, to: str | None = None, limit: int = 5000) -> list[dict[str, Any]]:
    async with _relay(platform) as relay:
        r = await relay.get("/_sim/mails", params={"limit": limit, **({"to": to} if to else {})})
        return list(r.json())


async def _stats(platform: Platform) -> dict[str, int]:
    async with _relay(platform) as relay:
        return dict((await relay.get("/_sim/stats")).json())


async def test_an_identity_sends_only_once_its_dkim_record_is_in_dns_and_its_key_is_write_only(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
    await _templates(platform, auth)
    made = await platform.http.put(
        "/v1/email/identities", headers=auth, json={"from_address": "Billing@Mail.Shop.Example"}
    )
    assert made.status_code == 200, made.text
    identity = made.json()
    assert (identity["from_address"], identity["status"], identity["domain"]) == (
        "billing@mail.shop.example", "pending", "mail.shop.example")  # fmt: skip
    (record,) = identity["dns_records"]
    assert (record["type"], record["name"]) == ("TXT", "herald1._domainkey.mail.shop.example")
    assert record["value"].startswith("v=DKIM1; k=rsa; p=")
    assert "PRIVATE" not in made.text
    assert "private" not in made.text

    # No verified identity: an email is refused at accept, and nothing is queued.
    refused = await platform.http.post("/v1/messages", headers=auth, json={
        "to": "ann@example.org", **RECEIPT, "params": {"order": "A1", "name": "Ann"}})  # fmt: skip
    assert (refused.status_code, refused.json()["code"]) == (422, "email_identity_unverified"), refused.text

    path = "/v1/email/identities/billing@mail.shop.example/verify"
    missing = await platform.http.post(path, headers=auth)
    assert (missing.status_code, missing.json()["code"]) == (409, "dkim_record_not_found"), missing.text
    async with _relay(platform) as relay:
        await relay.put("/_sim/dns", json={"name": record["name"], "value": "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0B"})
        wrong = await platform.http.post(path, headers=auth)
        assert (wrong.status_code, wrong.json()["code"]) == (409, "dkim_record_mismatch"), wrong.text
        await relay.put("/_sim/dns", json={"name": record["name"], "value": record["value"]})
    verified = await platform.http.post(path, headers=auth)
    assert (verified.status_code, verified.json()["status"]) == (200, "verified"), verified.text

    # Stored wrapped under the KEK: no PEM in the database.
    stored = await pool.fetchval("SELECT private_key FROM email_identities WHERE tenant_id = $1", uuid.UUID(tenant_id))
    assert b"PRIVATE KEY" not in bytes(stored)
    assert len(bytes(stored)) > 1000

    # Another tenant sees none of it (404, not 403); a key that is not RSA PEM is refused.
    _, other = await platform.tenant_with_key()
    assert (await platform.http.get("/v1/email/identities/billing@mail.shop.example", headers=other)).status_code == 404
    not_a_key = "-----BEGIN PRIVATE KEY-----\n" + "A" * 200
    imported = {"from_address": "x@mail.shop.example", "dkim_private_key": not_a_key}
    bad = await platform.http.put("/v1/email/identities", headers=auth, json=imported)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_dkim_key"), bad.text
    assert "dkim_private_key" in bad.text
    count = await pool.fetchval("SELECT count(*) FROM email_identities WHERE tenant_id = $1", uuid.UUID(tenant_id))
    assert count == 1


async def test_a_campaign_arrives_dkim_valid_with_one_click_unsubscribe_on_marketing_only(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    tenant_id, auth, identity = await _sender(platform)
    addresses = [f"customer{i}@example.org" for i in range(1000)]
    r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": [
        {"to": to, **PROMO, "params": {"name": f"Customer {i}"}} for i, to in enumerate(addresses)]})  # fmt: skip
    assert (r.status_code, r.json()["rejected"]) == (202, 0), r.text
    ids = {item["id"] for item in r.json()["results"]}
    code = await platform.http.post("/v1/messages", headers=auth, json={"to": "otp@example.org", **CODE,
                                                                        "params": {"code": "482913"}})  # fmt: skip
    assert code.status_code == 202, code.text
    await at_least(lambda: _count(platform), 1001, "mails at the relay", seconds=90)

    mails = await _mails(platform)
    campaign = [m for m in mails if m["rcpt_to"][0] in set(addresses)]
    assert sorted(m["rcpt_to"][0] for m in campaign) == sorted(addresses)  # each once
    for mail in campaign:
        raw = mail["raw"].encode()
        assert _dkim_valid(raw, identity), mail["rcpt_to"]
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        herald_id = parsed["Message-ID"].strip("<>").partition("@")[0]
        assert herald_id in ids
        assert parsed["From"] == f"Shop <{SENDER}>"
        assert re.fullmatch(r"<http://127\.0\.0\.1:\d+/v1/unsubscribe/[A-Za-z0-9_-]+>, <mailto:.+>",
                            parsed["List-Unsubscribe"])  # fmt: skip
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        signature = parsed["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
        assert "list-unsubscribe:list-unsubscribe-post" in signature  # both signed (RFC 8058 §4)
        verp = rf"bounces\+{uuid.UUID(herald_id).hex}-[0-9a-f]{{20}}@mail\.shop\.example"
        assert re.fullmatch(verp, mail["mail_from"])
    (otp,) = [m for m in mails if m["rcpt_to"] == ["otp@example.org"]]
    parsed = email.message_from_bytes(otp["raw"].encode(), policy=email.policy.default)
    assert _dkim_valid(otp["raw"].encode(), identity)
    assert parsed["List-Unsubscribe"] is None
    assert parsed["List-Unsubscribe-Post"] is None
    assert "482913" in parsed.get_body(("plain",)).get_content()
    assert (await _stats(platform))["duplicates"] == 0
    # `sent` when the relay took it, `delivered` by the relay's delivery report (RFC 3464).
    await wait_status_count(pool, 1001, "delivered", tenant_id, deadline_s=60)


async def _count(platform: Platform) -> int:
    return (await _stats(platform))["received"]


async def test_an_injected_param_cannot_break_out_of_the_html_or_add_a_header(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    _, auth, identity = await _sender(platform)
    before = await pool.fetchval("SELECT count(*) FROM messages")
    injected = {"order": "A1\r\nBcc: victim@example.org", "name": "Eve"}
    header = await platform.http.post("/v1/messages", headers=auth,
                                      json={"to": "eve@example.org", **RECEIPT, "params": injected})  # fmt: skip
    assert (header.status_code, header.json()["code"]) == (422, "params_invalid"), header.text
    assert header.json()["errors"][0]["field"] == "params.order"
    markup = '<script>alert(1)</script><a href="https://evil.example">x</a>'
    sent = await platform.http.post("/v1/messages", headers=auth, json={
        "to": "eve@example.org", **RECEIPT, "params": {"order": "A2", "name": markup}})  # fmt: skip
    assert sent.status_code == 202, sent.text
    await platform.wait_status(auth, sent.json()["id"], {"delivered"})
    (mail,) = await _mails(platform, to="eve@example.org")
    parsed = email.message_from_bytes(mail["raw"].encode(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert mail["rcpt_to"] == ["eve@example.org"]
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "<a href" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&quot;https://evil.example&quot;&gt;" in html
    assert "<i>A2</i>" in html  # the template's own markup stays markup
    assert markup in parsed.get_body(("plain",)).get_content()  # the text part is text
    assert _dkim_valid(mail["raw"].encode(), identity)
    assert await pool.fetchval("SELECT count(*) FROM messages") == before + 1


async def test_one_click_unsubscribe_stops_the_next_marketing_email_and_nothing_else(platform: Platform) -> None:
    _tenant_id, auth, _ = await _sender(platform)
    to = "bob@example.org"
    first = await platform.http.post("/v1/messages", headers=auth, json={"to": to, **PROMO, "params": {"name": "Bob"}})
    assert first.status_code == 202, first.text
    await platform.wait_status(auth, first.json()["id"], {"delivered"})
    (mail,) = await _mails(platform, to=to)
    parsed = email.message_from_bytes(mail["raw"].encode(), policy=email.policy.default)
    url = re.match(r"<([^>]+)>", parsed["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]

    async with httpx.AsyncClient(timeout=10) as reader:  # no credentials: the mail client's request
        page = await reader.get(url)
        assert (page.status_code, page.headers["content-type"].split(";")[0]) == (200, "text/html")
        assert (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"] == []  # GET changes nothing
        forged = await reader.post(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"),
                                   content=b"List-Unsubscribe=One-Click")  # fmt: skip
        assert (forged.status_code, forged.json()["code"]) == (404, "unsubscribe_link_not_found")
        assert (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"] == []
        for _ in range(2):  # idempotent
            done = await reader.post(url, content=b"List-Unsubscribe=One-Click",
                                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
            assert done.status_code == 200, done.text

    (entry,) = (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"]
    assert (entry["channel"], entry["reason"], entry["hint"]) == ("email", "unsubscribed", "b•••@example.org")

    # The mailto alternative (RFC 8058 §3.1): a mail to the unsubscribe mailbox whose subject is the
    # one in the link, as the reader's mail client sends it (to Herald's inbound port, its MX).
    mailto = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", parsed["List-Unsubscribe"])
    assert mailto is not None
    carol = "carol@example.org"
    body = {"to": carol, **PROMO, "params": {"name": "C"}}
    second = await platform.http.post("/v1/messages", headers=auth, json=body)
    await platform.wait_status(auth, second.json()["id"], {"delivered"})
    (carols,) = await _mails(platform, to=carol)
    link = email.message_from_bytes(carols["raw"].encode(), policy=email.policy.default)["List-Unsubscribe"]
    subject = urllib.parse.unquote(re.search(r"\?subject=([^>]+)>", link).group(1))  # type: ignore[union-attr]
    unsubscribe_mail = f"From: {carol}\r\nTo: {mailto.group(1)}\r\nSubject: {subject}\r\n\r\n".encode()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=platform.settings.email.inbound_port, timeout=10)
    async with client:
        await client.sendmail(carol, [mailto.group(1)], unsubscribe_mail)
    items = (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"]
    assert sorted((i["hint"], i["reason"]) for i in items) == [("b•••@example.org", "unsubscribed"),
                                                               ("c•••@example.org", "unsubscribed")]  # fmt: skip
    again = await platform.http.post("/v1/messages", headers=auth, json={"to": to, **PROMO, "params": {"name": "Bob"}})
    assert (again.status_code, again.json()["code"]) == (422, "recipient_suppressed"), again.text
    receipt = await platform.http.post("/v1/messages", headers=auth, json={
        "to": to, **RECEIPT, "params": {"order": "B7", "name": "Bob"}})  # fmt: skip
    assert receipt.status_code == 202, receipt.text  # a receipt for an order still goes
    await platform.wait_status(auth, receipt.json()["id"], {"delivered"})
    # Another tenant's marketing to the same address is its own business.
    _, other, _ = await _sender(platform)
    theirs = await platform.http.post("/v1/messages", headers=other, json={"to": to, **PROMO, "params": {"name": "B"}})
    assert theirs.status_code == 202, theirs.text


async def test_the_relays_refusals_fail_the_message_with_the_reason(platform: Platform) -> None:
    _, auth, _ = await _sender(platform)
    expected = {"nosuchuser7@example.org": ("undeliverable", "550 5.1.1"),
                "blocked7@example.org": ("rejected", "554 5.7.1")}  # fmt: skip
    for to, (reason, reply) in expected.items():
        params = {"order": "1", "name": "N"}
        r = await platform.http.post("/v1/messages", headers=auth, json={"to": to, **RECEIPT, "params": params})
        assert r.status_code == 202, r.text
        message = await platform.wait_status(auth, r.json()["id"])
        assert message["status"] == "failed", message
        failed = [(e.get("detail"), e.get("provider_error")) for e in message["events"] if e["status"] == "failed"]
        assert failed == [(reason, reply)], message
    assert (await _stats(platform))["refused"] == 2  # each refused once: a 5xx is never retried


@pytest.mark.parametrize("fault", [{"drop_before_data": 6}, {"throttle": True}])
async def test_a_relay_that_drops_or_throttles_mid_campaign_loses_nothing_and_sends_nothing_twice(
    settings: Settings, pool: asyncpg.Pool, fault: dict[str, Any]
) -> None:
    # With the retry topic, as in production: a mail the relay did not take waits and goes again.
    worker = msgspec.structs.replace(settings.worker, retry_delays_seconds=(0.5, 1.0, 2.0, 4.0))
    platform = await Platform(msgspec.structs.replace(settings, worker=worker)).start(email=True)
    try:
        await _mid_campaign_fault(platform, pool, fault)
    finally:
        await platform.stop()


async def _mid_campaign_fault(platform: Platform, pool: asyncpg.Pool, fault: dict[str, Any]) -> None:
    tenant_id, auth, _ = await _sender(platform)
    addresses = [f"reader{i}@example.org" for i in range(300)]
    batch = [{"to": to, **RECEIPT, "params": {"order": str(i), "name": "R"}} for i, to in enumerate(addresses)]
    r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": batch})
    assert r.status_code == 202, r.text
    async with _relay(platform) as relay:
        await at_least(lambda: _count(platform), 30, "mails before the fault", seconds=30)
        assert (await relay.post("/_sim/faults", json=fault)).status_code == 204
        await asyncio.sleep(1.0)
        assert (await relay.post("/_sim/faults", json={})).status_code == 204
    await wait_status_count(pool, 300, "delivered", tenant_id, deadline_s=90)
    stats = await _stats(platform)
    assert stats["dropped"] + stats["throttled"] > 0, stats  # the fault was met
    assert (stats["received"], stats["unique"], stats["duplicates"]) == (300, 300, 0), stats
    statuses = await pool.fetch("SELECT status, count(*) FROM messages WHERE tenant_id = $1 GROUP BY status",
                                uuid.UUID(tenant_id))  # fmt: skip
    assert {row["status"]: row["count"] for row in statuses} == {"delivered": 300}


@pytest.mark.parametrize("held_across_workers", [True, False])
async def test_the_relays_connection_limit_holds_across_workers(
    settings: Settings, pool: asyncpg.Pool, held_across_workers: bool
) -> None:
    """The relay takes 2 connections from Herald (`421 4.7.0` beyond, as Postfix answers past
    `smtpd_client_connection_count_limit`); two workers may each open 4. Held across workers, the
    relay never sees a third connection and never refuses one; without it (the control), it does."""
    relay_limit = 2
    mail_sim = msgspec.structs.replace(settings.mail_sim, max_connections=relay_limit)
    email_settings = msgspec.structs.replace(
        settings.email, smtp_connections=4, smtp_relay_connections=relay_limit if held_across_workers else 0
    )
    platform = await Platform(msgspec.structs.replace(settings, mail_sim=mail_sim, email=email_settings)).start(
        email=True
    )
    platform.add_worker()
    try:
        tenant_id, auth, _ = await _sender(platform)
        batch = [{"to": f"limit{i}@example.org", **RECEIPT, "params": {"order": str(i), "name": "L"}}
                 for i in range(200)]  # fmt: skip
        r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": batch})
        assert r.status_code == 202, r.text
        if not held_across_workers:
            await at_least(lambda: _refused_connections(platform), 1, "connections the relay refused", seconds=30)
            return
        await wait_status_count(pool, 200, "delivered", tenant_id, deadline_s=60)
        stats = await _stats(platform)
        assert (stats["connections_refused"], stats["received"], stats["duplicates"]) == (0, 200, 0), stats
        assert 1 <= stats["connections_peak"] <= relay_limit, stats
    finally:
        await platform.stop()


async def _refused_connections(platform: Platform) -> int:
    return (await _stats(platform))["connections_refused"]


async def _report_to(platform: Platform, address: str, report: bytes) -> int:
    """Send a report to Herald's inbound SMTP port as a relay would; the reply code."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=platform.settings.email.inbound_port, timeout=10)
    async with client:
        await client.mail("")
        try:
            await client.rcpt(address)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return exc.code
        return (await client.data(report)).code


async def test_a_stopping_api_closes_the_connections_its_report_server_has_open(settings: Settings) -> None:
    """A relay mid-session when the API stops gets its connection closed (it sends the report
    again later), not held by a process that no longer listens: Python 3.11's `Server.close()`
    alone leaves accepted connections open."""
    platform = await Platform(settings).start(worker=False, sinks=False, sim=False)
    stopped = False
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.email.inbound_port)
    try:
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")  # RFC 5321 greeting
        writer.write(b"EHLO relay.example.org\r\n")
        await writer.drain()
        while not (line := await asyncio.wait_for(reader.readline(), 5)).startswith(b"250 "):
            assert line.startswith(b"250-"), line
        await platform.stop()
        stopped = True
        assert await asyncio.wait_for(reader.read(), 5) == b"", "the connection outlived the API"
    finally:
        writer.close()
        if not stopped:
            await platform.stop()


async def test_a_hard_bounce_or_a_complaint_stops_the_next_marketing_email_and_a_forged_report_changes_nothing(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    _, auth, _ = await _sender(platform)
    sent = {}
    for to in ("bounce1@example.org", "softbounce1@example.org", "complain1@example.org"):
        r = await platform.http.post("/v1/messages", headers=auth, json={"to": to, **PROMO, "params": {"name": "X"}})
        assert r.status_code == 202, r.text
        sent[to] = r.json()["id"]
    bounced = await platform.wait_status(auth, sent["bounce1@example.org"])
    assert bounced["status"] == "failed"
    failed = [(e.get("detail"), e.get("provider_error")) for e in bounced["events"] if e["status"] == "failed"]
    assert failed == [("undeliverable", "550 5.1.1")], bounced
    # A soft bounce is the relay retrying: `delayed` changes nothing, its later success delivers.
    assert (await platform.wait_status(auth, sent["softbounce1@example.org"]))["status"] == "delivered"
    assert (await platform.wait_status(auth, sent["complain1@example.org"]))["status"] == "delivered"

    await at_least(lambda: _suppressed(platform, auth), 2, "suppressions", seconds=20)
    assert await _reasons(platform, auth) == {"b•••@example.org": "bounced", "c•••@example.org": "complained"}
    for to in ("bounce1@example.org", "complain1@example.org"):
        body = {"to": to, **PROMO, "params": {"name": "Y"}}
        again = await platform.http.post("/v1/messages", headers=auth, json=body)
        assert (again.status_code, again.json()["code"]) == (422, "recipient_suppressed"), again.text
    soft_again = {"to": "softbounce1@example.org", **PROMO, "params": {"name": "X"}}
    soft = await platform.http.post("/v1/messages", headers=auth, json=soft_again)
    assert soft.status_code == 202, soft.text

    # A report to a bounce address Herald did not mint (a forged tag, another message's id) is
    # refused at RCPT; a replayed report is taken and changes nothing.
    (mail,) = await _mails(platform, to="softbounce1@example.org", limit=1)
    verp = mail["mail_from"]
    forged = re.sub(r"-[0-9a-f]{20}@", "-" + "0" * 20 + "@", verp)
    report = _hard_bounce(verp, "softbounce1@example.org")
    assert await _report_to(platform, forged, report) == 550
    other_id = uuid.uuid4().hex
    assert await _report_to(platform, re.sub(r"\+[0-9a-f]{32}-", f"+{other_id}-", verp), report) == 550
    assert (await platform.wait_status(auth, sent["softbounce1@example.org"]))["status"] == "delivered"
    events = "SELECT count(*) FROM message_events WHERE message_id = $1"
    bounced_id = uuid.UUID(sent["bounce1@example.org"])
    events_before = await pool.fetchval(events, bounced_id)
    bounce_verp = (await _mails(platform, to="bounce1@example.org", limit=1))[0]["mail_from"]
    assert await _report_to(platform, bounce_verp, _hard_bounce(bounce_verp, "bounce1@example.org")) == 250
    await asyncio.sleep(1.0)
    assert await _reasons(platform, auth) == {"b•••@example.org": "bounced", "c•••@example.org": "complained"}
    after = await pool.fetchval(events, bounced_id)
    assert after == events_before
    stats = await _stats(platform)
    assert (stats.get("reports_failed"), stats.get("reports_complained")) == (1, 1), stats


async def _reasons(platform: Platform, auth: dict[str, str]) -> dict[str, str]:
    """The tenant's suppression list: hint -> reason."""
    items = (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"]
    return {i["hint"]: i["reason"] for i in items}


async def _suppressed(platform: Platform, auth: dict[str, str]) -> int:
    return len(await _reasons(platform, auth))


def _hard_bounce(to: str, recipient: str) -> bytes:
    """A failure report as RFC 3464's example (appendix) lays it out."""
    return (
        f"From: MAILER-DAEMON@relay.example\r\nTo: <{to}>\r\nSubject: Returned mail\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RAA14128.773615765/CS.UTK.EDU"\r\n\r\n'
        "--RAA14128.773615765/CS.UTK.EDU\r\n\r\nThe original message was received but could not be delivered.\r\n"
        "--RAA14128.773615765/CS.UTK.EDU\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--RAA14128.773615765/CS.UTK.EDU--\r\n"
    ).encode()


def _ses_client(platform: Platform) -> Any:
    """A boto3 SES v2 client on the double: the tenant's own AWS console, verifying its sender."""
    return boto3.client("sesv2", region_name="eu-west-1", endpoint_url=platform.settings.email.ses_endpoint_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


async def _with_email_providers(settings: Settings, *providers: str) -> Platform:
    email_settings = msgspec.structs.replace(settings.email, providers=providers)
    return await Platform(msgspec.structs.replace(settings, email=email_settings)).start(email=True)


async def test_ses_delivers_retries_its_throttling_and_maps_its_rejections(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    platform = await _with_email_providers(settings, "ses")
    try:
        _, auth, identity = await _sender(platform)
        await asyncio.to_thread(_ses_client(platform).create_email_identity, EmailIdentity=SENDER)
        async with httpx.AsyncClient(base_url=platform.settings.email.ses_endpoint_url, timeout=10) as ses:
            # SES throttles the first three calls (429 TooManyRequestsException): retried, not lost.
            assert (await ses.post("/_sim/faults", json={"throttle": 3})).status_code == 204
            ids = []
            for i in range(5):
                r = await platform.http.post("/v1/messages", headers=auth,
                                             json={"to": f"ses{i}@example.org", **RECEIPT,
                                                   "params": {"order": str(i), "name": "S"}})  # fmt: skip
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            for message_id in ids:
                message = await platform.wait_status(auth, message_id, {"delivered"})
                (sent,) = [e for e in message["events"] if e["status"] == "sent"]
                assert sent["provider"] == "ses"
            found = (await ses.get("/_sim/sent")).json()
        assert sorted(m["to"][0] for m in found["sent"]) == [f"ses{i}@example.org" for i in range(5)]
        assert all(_dkim_valid(m["raw"].encode(), identity) for m in found["sent"])

        # A sender SES has not verified: SES answers 400 MessageRejected, the message fails once.
        _, other = await platform.tenant_with_key(tier="enterprise")
        await _identity(platform, other, "news@mail.other.example")
        await _templates(platform, other)
        r = await platform.http.post("/v1/messages", headers=other, json={
            "to": "x@example.org", **RECEIPT, "params": {"order": "1", "name": "X"}})  # fmt: skip
        message = await platform.wait_status(auth | other, r.json()["id"])
        failed = [(e.get("detail"), e.get("provider_error")) for e in message["events"] if e["status"] == "failed"]
        assert failed == [("rejected", "400 MessageRejected")], message
    finally:
        await platform.stop()


async def test_email_fails_over_from_a_relay_outage_to_ses_and_nothing_goes_twice(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    platform = await _with_email_providers(settings, "smtp", "ses")
    try:
        tenant_id, auth, _ = await _sender(platform)
        await asyncio.to_thread(_ses_client(platform).create_email_identity, EmailIdentity=SENDER)
        async with _relay(platform) as relay:
            assert (await relay.post("/_sim/faults", json={"outage": True})).status_code == 204
            batch = [{"to": f"over{i}@example.org", **RECEIPT, "params": {"order": str(i), "name": "O"}}
                     for i in range(40)]  # fmt: skip
            r = await platform.http.post("/v1/messages/batch", headers=auth, json={"messages": batch})
            assert r.status_code == 202, r.text
            await wait_status_count(pool, 40, "delivered", tenant_id, deadline_s=60)
            assert (await relay.post("/_sim/faults", json={})).status_code == 204
        providers = await pool.fetch(
            "SELECT provider, count(*) AS n, count(DISTINCT message_id) AS messages FROM provider_messages"
            " WHERE tenant_id = $1 GROUP BY provider", uuid.UUID(tenant_id))  # fmt: skip
        assert [(p["provider"], p["n"], p["messages"]) for p in providers] == [("ses", 40, 40)]
        assert (await _stats(platform))["received"] == 0
    finally:
        await platform.stop()


async def test_a_tenants_complaint_rate_is_reported_once_it_has_mail_enough_and_dropped_when_it_ages_out(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    """The projection's rows as the sinks write them (a day of traffic is not sent in a test)."""
    noisy, quiet, small = [uuid.UUID((await platform.tenant(tier="enterprise"))["id"]) for _ in range(3)]
    now = datetime.now(UTC)

    async def delivered(tenant: uuid.UUID, n: int, at: datetime) -> None:
        await pool.executemany(
            "INSERT INTO messages (id, tenant_id, key_kind, channel, category, template_name, template_language,"
            " template_version, status, created_at, expires_at) VALUES"
            " ($1, $2, 'live', 'email', 'marketing', 'promo', 'en', 1, 'delivered', $3::timestamptz,"
            " $3::timestamptz + interval '1 day')",
            [(uuid.uuid4(), tenant, at) for _ in range(n)],
        )

    async def complained(tenant: uuid.UUID, n: int, at: datetime) -> None:
        await pool.executemany(
            "INSERT INTO suppressions (tenant_id, channel, recipient_hash, hint, reason, created_at)"
            " VALUES ($1, 'email', $2, 'x•••@example.org', 'complained', $3)",
            [(tenant, uuid.uuid4().bytes * 2, at) for _ in range(n)],
        )

    await delivered(noisy, 400, now - timedelta(hours=2))
    await complained(noisy, 2, now - timedelta(hours=1))  # 0.5%
    await delivered(quiet, 1000, now - timedelta(hours=2))
    await complained(quiet, 1, now - timedelta(hours=1))  # 0.1%
    await delivered(small, 20, now - timedelta(hours=2))
    await complained(small, 1, now - timedelta(hours=1))  # 5%, of too little mail to say anything
    await delivered(noisy, 5000, now - timedelta(days=2))  # outside the day: not counted
    shown: set[str] = set()
    await report_complaint_rates(pool, shown)
    assert _ratio(noisy) == pytest.approx(0.005)
    assert _ratio(quiet) == pytest.approx(0.001)
    assert _ratio(small) is None
    assert shown == {str(noisy), str(quiet)}
    older = "UPDATE suppressions SET created_at = created_at - interval '2 days' WHERE tenant_id = $1"
    await pool.execute(older, noisy)
    await report_complaint_rates(pool, shown)
    assert _ratio(noisy) is None
    assert shown == {str(quiet)}


def _ratio(tenant: uuid.UUID) -> float | None:
    value = REGISTRY.get_sample_value("herald_email_complaint_ratio", {"tenant": str(tenant)})
    return None if value is None else float(value)


async def test_ses_events_through_sns_deliver_bounce_and_suppress_and_a_forged_one_changes_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    platform = await _with_email_providers(settings, "ses")
    try:
        _, auth, _ = await _sender(platform)
        await asyncio.to_thread(_ses_client(platform).create_email_identity, EmailIdentity=SENDER)
        ids = {}
        for to in ("ses-ok@example.org", "bounce-ses@example.org", "complain-ses@example.org"):
            body = {"to": to, **PROMO, "params": {"name": "S"}}
            r = await platform.http.post("/v1/messages", headers=auth, json=body)
            assert r.status_code == 202, r.text
            ids[to] = r.json()["id"]
        assert (await platform.wait_status(auth, ids["ses-ok@example.org"]))["status"] == "delivered"
        bounced = await platform.wait_status(auth, ids["bounce-ses@example.org"])
        failed = [(e.get("detail"), e.get("provider_error")) for e in bounced["events"] if e["status"] == "failed"]
        assert failed == [("undeliverable", "5.1.1")], bounced
        assert (await platform.wait_status(auth, ids["complain-ses@example.org"]))["status"] == "delivered"

        await at_least(lambda: _suppressed(platform, auth), 2, "suppressions", seconds=20)
        assert await _reasons(platform, auth) == {"b•••@example.org": "bounced", "c•••@example.org": "complained"}

        # A notification Herald did not get from SNS: signed by another key, or naming a
        # certificate elsewhere, or another topic. Each refused; nothing changes.
        async with httpx.AsyncClient(base_url=platform.settings.email.ses_endpoint_url, timeout=10) as ses:
            genuine = (await ses.get("/_sim/sent")).json()
            assert genuine["notified"].get("bounce") == 1
            assert (await ses.post("/_sim/subscribe")).status_code == 202
            await at_least(lambda: _confirmed(ses), 1, "subscription confirmed", seconds=10)
        (ok,) = [m for m in genuine["sent"] if m["to"] == ["ses-ok@example.org"]]
        event = {"eventType": "Bounce", "mail": {"messageId": ok["message_id"]},
                 "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "ses-ok@example.org"}]}}
        forged = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": SesSimSettings().topic_arn,
                  "Message": json.dumps(event), "Timestamp": "2026-12-05T01:00:00.000Z", "SignatureVersion": "2",
                  "Signature": base64.b64encode(b"x" * 256).decode(),
                  "SigningCertURL": f"{platform.settings.email.ses_endpoint_url}/_sim/sns-cert.pem"}  # fmt: skip
        url = "/v1/providers/ses/notifications"
        for body, status, code in (
            (forged, 401, "invalid_signature"),
            ({**forged, "SigningCertURL": "https://evil.example/cert.pem"}, 401, "invalid_signature"),
            ({**forged, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"}, 422, "unknown_topic"),
            ({"Type": "Notification"}, 422, "invalid_notification"),
        ):
            r = await platform.http.post(url, content=json.dumps(body), headers={"content-type": "text/plain"})
            assert (r.status_code, r.json()["code"]) == (status, code), r.text
        await asyncio.sleep(0.5)
        still = await platform.http.get(f"/v1/messages/{ids['ses-ok@example.org']}", headers=auth)
        assert still.json()["status"] == "delivered"
        assert await _reasons(platform, auth) == {"b•••@example.org": "bounced", "c•••@example.org": "complained"}
    finally:
        await platform.stop()


async def _confirmed(ses: httpx.AsyncClient) -> int:
    return int((await ses.get("/_sim/sent")).json()["confirmed"])


async def test_the_tenant_is_told_by_callback_when_a_recipient_unsubscribes_or_bounces(platform: Platform) -> None:
    receiver, port = Receiver(), free_port()
    served = Served(receiver.app, port)
    await served.start()
    try:
        tenant = await platform.tenant(tier="enterprise", callback_url=f"http://127.0.0.1:{port}/cb/shop")
        auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
        await _identity(platform, auth)
        await _templates(platform, auth)
        sent = {}
        for to in ("dora@example.org", "bounce2@example.org"):
            body = {"to": to, **PROMO, "params": {"name": "D"}}
            sent[to] = (await platform.http.post("/v1/messages", headers=auth, json=body)).json()["id"]
            await platform.wait_status(auth, sent[to])
        (mail,) = await _mails(platform, to="dora@example.org")
        url = re.search(r"List-Unsubscribe: <([^>]+)>", mail["raw"]).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(timeout=10) as reader:
            assert (await reader.post(url, content=b"List-Unsubscribe=One-Click")).status_code == 200

        def suppressed() -> list[SuppressionEvent]:
            events = [verify_callback(body, headers.get("herald-signature"), tenant["callback_secret"])
                      for _, _, headers, body in receiver.received]  # fmt: skip
            return [e for e in events if isinstance(e, SuppressionEvent)]

        await eventually(lambda: len(suppressed()), lambda n: n >= 2, "two suppression callbacks", seconds=20)
        by_message = {str(e.message_id): (e.reason, e.channel.value, e.suppression_id[:6]) for e in suppressed()}
        assert by_message == {sent["dora@example.org"]: ("unsubscribed", "email", "email:"),
                              sent["bounce2@example.org"]: ("bounced", "email", "email:")}  # fmt: skip
        entries = (await platform.http.get("/v1/suppressions", headers=auth)).json()["items"]
        assert {e.suppression_id for e in suppressed()} == {e["id"] for e in entries}
        # The messages' own status callbacks still all go out (the suppression is not their status).
        await eventually(lambda: _statuses(receiver), lambda s: s >= {(sent["dora@example.org"], "delivered"),
                                                                      (sent["bounce2@example.org"], "failed")},
                         "status callbacks", seconds=20)  # fmt: skip
        assert b"dora@example.org" not in b"".join(body for *_, body in receiver.received)
    finally:
        await served.stop()


def _statuses(receiver: Receiver) -> set[tuple[str, str]]:
    return {(b["message_id"], b["status"]) for b in receiver.bodies("shop") if "status" in b}


async def test_mail_goes_to_the_relay_over_starttls_with_its_certificate_verified(
    settings: Settings, tmp_path: Path
) -> None:
    cert = str(tmp_path / "relay.pem")
    email_settings = msgspec.structs.replace(settings.email, smtp_tls="starttls", smtp_tls_ca_file=cert)
    relay_settings = msgspec.structs.replace(settings.mail_sim, tls_cert_file=cert)
    platform = await Platform(msgspec.structs.replace(settings, email=email_settings, mail_sim=relay_settings)).start(
        email=True
    )
    try:
        _, auth, identity = await _sender(platform)
        ids = []
        for i in range(3):
            body = {"to": f"tls{i}@example.org", **RECEIPT, "params": {"order": str(i), "name": "T"}}
            ids.append((await platform.http.post("/v1/messages", headers=auth, json=body)).json()["id"])
        for message_id in ids:
            assert (await platform.wait_status(auth, message_id))["status"] == "delivered"
        stats = await _stats(platform)
        assert (stats["received"], stats["tls"]) == (3, 3)  # every mail over TLS, the certificate verified
        assert all(_dkim_valid(m["raw"].encode(), identity) for m in await _mails(platform))
    finally:
        await platform.stop()
