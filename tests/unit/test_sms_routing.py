"""SMS routing rules, SMPP receipts and replies, provider health: the pure parts.

Receipt texts follow SMPP 3.4 Appendix B and the vendor variants collected in
`../shared/PROVIDERS.md` (Kannel-style lower-case keys, seconds in the dates, ids in the
`receipted_message_id` TLV only)."""

from __future__ import annotations

import uuid

import pytest

from herald.domain.sms_routing import ProviderKind, Route, SmsProvider, Strategy, ranked, route_for
from herald.domain.status import Status
from herald_worker.sms.health import Health
from herald_worker.sms.smpp_receipts import (
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    is_receipt,
    is_stop,
    parse_receipt,
)

TENANT = uuid.UUID(int=1)


def _provider(name: str, prices: dict[str, int], enabled: bool = True) -> SmsProvider:
    return SmsProvider(name=name, kind=ProviderKind.SMPP, endpoint="h:1", prices=prices, enabled=enabled)


def test_the_most_specific_route_wins() -> None:
    routes = [
        Route("*", Strategy.ORDERED, ("a",)),
        Route("GB", Strategy.ORDERED, ("b",)),
        Route("*", Strategy.ORDERED, ("c",), tenant_id=TENANT),
        Route("GB", Strategy.ORDERED, ("d",), tenant_id=TENANT),
        Route("GB", Strategy.ORDERED, ("e",), tenant_id=uuid.UUID(int=2)),
    ]
    assert route_for(routes, TENANT, "GB").providers == ("d",)
    assert route_for(routes, TENANT, "FR").providers == ("c",)
    assert route_for(routes, uuid.UUID(int=3), "GB").providers == ("b",)
    assert route_for(routes, uuid.UUID(int=3), None).providers == ("a",)
    assert route_for(routes[1:2], uuid.UUID(int=3), "FR") is None


def test_cost_ranks_by_the_countrys_price_then_the_fallback_price_unpriced_last_ties_as_listed() -> None:
    providers = {
        "dear": _provider("dear", {"GB": 50, "*": 10}),
        "cheap": _provider("cheap", {"*": 20}),
        "unpriced": _provider("unpriced", {}),
        "tie": _provider("tie", {"GB": 20}),
        "off": _provider("off", {"*": 1}, enabled=False),
    }
    route = Route("GB", Strategy.COST, ("unpriced", "dear", "cheap", "tie", "off"))
    assert [p.name for p in ranked(route, providers, "GB")] == ["cheap", "tie", "dear", "unpriced"]
    assert [p.name for p in ranked(route, providers, "FR")] == ["dear", "cheap", "unpriced", "tie"]
    ordered = Route("GB", Strategy.ORDERED, ("unpriced", "dear", "off", "ghost"))
    assert [p.name for p in ranked(ordered, providers, "GB")] == ["unpriced", "dear"]


@pytest.mark.parametrize(
    ("text", "tlvs", "expected"),
    [
        (b"id:0000002a sub:001 dlvrd:001 submit date:2612041530 done date:2612041531 stat:DELIVRD err:000 text:Hi",
         {}, ("0000002a", Status.DELIVERED, 1796398260000, None)),
        # Kannel-style: lower-case stat, seconds in the dates, the id in the TLV (with its NUL).
        (b"id:IGNORED sub:001 dlvrd:000 submit date:261204153000 done date:261204153105 stat:undeliv err:001",
         {TLV_RECEIPTED_MESSAGE_ID: b"7F3A\x00"}, ("7f3a", Status.FAILED, 1796398265000, "UNDELIV err:001")),
        (b"ID:9 STAT:EXPIRED ERR:00B", {}, ("9", Status.FAILED, None, "EXPIRED err:00B")),
        # No text at all: the TLVs alone (message_state 5 = UNDELIVERABLE).
        (b"", {TLV_RECEIPTED_MESSAGE_ID: b"ab\x00", TLV_MESSAGE_STATE: b"\x05"},
         ("ab", Status.FAILED, None, "FAILED err:?")),
    ],
)  # fmt: skip
def test_receipts_are_read_from_the_text_or_the_tlvs_whatever_the_vendor(
    text: bytes, tlvs: dict[int, bytes], expected: tuple[str, Status, int | None, str | None]
) -> None:
    receipt = parse_receipt(text, tlvs)
    assert receipt is not None
    assert (receipt.provider_message_id, receipt.status, receipt.at_ms, receipt.error) == expected


def test_a_receipt_naming_nothing_final_or_no_message_is_none() -> None:
    assert parse_receipt(b"id:5 stat:ACCEPTD err:000", {}) is None
    assert parse_receipt(b"id:5 stat:ENROUTE", {}) is None
    assert parse_receipt(b"stat:DELIVRD err:000", {}) is None
    assert is_receipt(0x04)
    assert not is_receipt(0x00)
    assert not is_receipt(0x40)  # UDHI alone: a concatenated reply, not a receipt


@pytest.mark.parametrize("reply", ["STOP", "stop", "Stop.", " STOP ", "Arrêt", "stopp", "Baja!", "UNSUBSCRIBE"])
def test_stop_words_and_their_translations_opt_out(reply: str) -> None:
    assert is_stop(reply)


@pytest.mark.parametrize("reply", ["Stop sending me flight news please", "YES", "", "stopover in Doha?"])
def test_other_replies_do_not(reply: str) -> None:
    assert not is_stop(reply)


def test_a_failing_provider_leaves_rotation_is_probed_once_at_a_time_and_comes_back() -> None:
    now = [0.0]
    health = Health(failures=3, cooldown_seconds=5.0, clock=lambda: now[0])
    for _ in range(2):
        health.failed("a")
    assert health.usable("a")  # two failures: still in rotation
    health.failed("a")
    assert not health.healthy("a")
    assert not health.usable("a")  # cooling down
    now[0] = 6.0
    assert health.usable("a")  # the probe
    assert not health.usable("a")  # one probe at a time
    health.failed("a")  # the probe failed: another cool-down
    now[0] = 8.0
    assert not health.usable("a")
    now[0] = 12.0
    assert health.usable("a")
    health.succeeded("a")
    assert health.healthy("a")
    assert health.usable("a")
    health.settled("a")  # a throttled answer says nothing either way
    assert health.usable("a")
