"""SMS through configured providers: an SMSC over SMPP (the `herald_smsc_sim` double, on
`smpp34`'s server) and an HTTP aggregator in Twilio's format (`herald_twilio_sim`), routed with
failover. Wire formats: SMPP 3.4 (submit_sm, deliver_sm receipts per Appendix B); Twilio's
Message resource and status callbacks signed with X-Twilio-Signature (Twilio, "Webhooks security")."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.eventually import at_least, eventually
from tests.integration.harness import Platform


def number(n: int) -> str:
    return f"+447400{n:05d}7"


async def _send_many(platform: Platform, auth: dict[str, str], start: int, count: int, **fields: object) -> list[str]:
    ids = []
    for n in range(start, start + count):
        r = await platform.send(auth, to=number(n), **fields)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


async def _statuses(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) FROM messages WHERE id = ANY($1::uuid[]) GROUP BY status",
                            [uuid.UUID(i) for i in ids])  # fmt: skip
    return {r["status"]: r["count"] for r in rows}


async def _providers_used(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT provider, count(*) FROM provider_messages WHERE message_id = ANY($1::uuid[]) GROUP BY provider",
        [uuid.UUID(i) for i in ids],
    )  # fmt: skip
    return {r["provider"]: r["count"] for r in rows}


async def test_sms_go_over_smpp_with_receipts_and_long_texts_in_concatenated_parts(
    platform: Platform, pool: asyncpg.Pool
) -> None:
    _, auth = await platform.tenant_with_key(tier="standard")
    await platform.template(auth, name="notice", body="{{text}}", category="utility")
    await platform.sms_providers()
    await platform.sms_route(["smpp-main", "twilio-backup"])
    short = await _send_many(platform, auth, 0, 20, template={"name": "notice", "language": "en"},
                             params={"text": "Your parcel is on its way"})  # fmt: skip
    long = await _send_many(platform, auth, 100, 5, template={"name": "notice", "language": "en"},
                            params={"text": "Ваш рейс задержан. " * 10})  # 190 UCS-2 units: 3 parts  # fmt: skip
    failing = await platform.send(auth, to="+447400120000", template={"name": "notice", "language": "en"},
                                  params={"text": "x"})  # fmt: skip
    ids = short + long
    await eventually(lambda: _statuses(pool, ids), lambda s: s.get("delivered") == len(ids), "all delivered",
                     seconds=30)  # fmt: skip
    assert await _providers_used(pool, ids) == {"sms:smpp-main": len(ids)}
    sent = (await platform.smsc.get("/_sim/sent")).json()
    assert all(sent["per_destination"][number(n)[1:]] == 1 for n in [*range(20), *range(100, 105)])
    assert sent["parts"] == 20 + 5 * 3 + 1
    failed = await platform.wait_status(auth, failing.json()["id"], {"failed"})
    assert failed["events"][-1]["detail"] == "undeliverable"
    assert failed["events"][-1]["provider_error"].startswith("UNDELIV err:001")
