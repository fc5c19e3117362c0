"""`herald billing ...`: the billing team's commands (rate cards, exports, reconcile, the month close:
close, credits and corrections, invoices).

Exit status: 0 on success; 1 when `reconcile` finds differences; 2 for bad input (argparse's
convention), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from herald.billing import ratecards
from herald.billing.invoices import Party, as_csv
from herald.billing.ledger import EntryKind
from herald.billing.pdf import render
from herald.billing.period import Month
from herald.billing.tax import eu_rates
from herald.db import billing, closes, entries, invoices
from herald.db.pool import opened_pool
from herald.errors import HeraldError
from herald.exports import Detail, Format, export
from herald_cli.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="billing_command", required=True)

    card = sub.add_parser("import-rate-card", help="import a rate card version from CSV")
    card.add_argument("csv", type=Path, help="channel,category,country,unit_price_micros (country * = fallback)")
    card.add_argument("--effective-from", required=True, help="ISO 8601 with a UTC offset, not in the past")
    card.add_argument("--currency", default=ratecards.DEFAULT_CURRENCY, help="ISO 4217 (default %(default)s)")
    card.add_argument("--note")

    sub.add_parser("rate-cards", help="list rate card versions")

    out = sub.add_parser("export", help="write a usage export to a file, with progress on stderr")
    out.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    out.add_argument("--tenant-id", type=uuid.UUID)
    out.add_argument("--format", choices=[f.value for f in Format], default=Format.CSV.value)
    out.add_argument("--detail", choices=[d.value for d in Detail], default=Detail.SUMMARY.value)
    out.add_argument("--output", "-o", type=Path, required=True)

    close = sub.add_parser("close", help="close a month: its ledger and exports never change again")
    close.add_argument("--month", required=True, help="YYYY-MM (UTC), ended, the month after the last closed")
    close.add_argument("--by", required=True, help="who closes it (recorded)")

    sub.add_parser("closes", help="list closed months")

    entry = sub.add_parser("entry", help="post a credit or a correction to a tenant's open month")
    entry.add_argument("--tenant-id", type=uuid.UUID, required=True)
    entry.add_argument("--kind", choices=[k.value for k in EntryKind], required=True)
    entry.add_argument("--amount-micros", type=int, required=True,
                       help="credit: the positive amount credited; correction: the signed change")  # fmt: skip
    entry.add_argument("--reason", required=True)
    entry.add_argument("--by", required=True, help="who makes it (recorded)")
    entry.add_argument("--month", help="YYYY-MM, an open month (default: the current one)")
    entry.add_argument("--corrects-message-id", type=uuid.UUID)
    entry.add_argument("--corrects-entry-id", type=uuid.UUID)

    inv = sub.add_parser("invoices", help="write a month's invoices: one CSV of every line and a PDF per invoice")
    inv.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    inv.add_argument("--output-dir", "-o", type=Path, required=True)
    inv.add_argument("--no-pdf", action="store_true", help="the CSV only")

    rec = sub.add_parser("reconcile", help="compare the ledger with billable delivered messages; exit 1 if they differ")
    rec.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    rec.add_argument("--limit", type=int, default=50, help="differences to print (default %(default)s)")


def run(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.database.url:
        sys.exit("herald billing needs HERALD_DATABASE_URL")
    commands = {
        "import-rate-card": _import,
        "rate-cards": _list,
        "export": _export,
        "reconcile": _reconcile,
        "close": _close,
        "closes": _closes,
        "entry": _entry,
        "invoices": _invoices,
    }
    try:
        code = asyncio.run(commands[args.billing_command](settings, args))
    except HeraldError as exc:
        print(f"herald billing: {exc.detail}", file=sys.stderr)
        code = 2
    sys.exit(code)


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        effective = datetime.fromisoformat(args.effective_from)
    except ValueError:
        print("herald billing: --effective-from is not an ISO 8601 time", file=sys.stderr)
        return 2
    try:
        card = msgspec.convert(
            {
                "effective_from": effective, "currency": args.currency, "note": args.note,
                "prices": ratecards.parse_csv(args.csv.read_text()),
            },
            ratecards.RateCardIn, from_attributes=True,
        )  # fmt: skip
    except msgspec.ValidationError as exc:
        print(f"herald billing: {exc}", file=sys.stderr)
        return 2
    ratecards.check(card, datetime.now(UTC))
    async with opened_pool(settings.database) as pool, pool.acquire() as conn:
        version = await billing.import_rate_card(conn, card)
    print(f"rate card version {version}: {len(card.prices)} prices in {card.currency}, effective {card.effective_from}")
    return 0


async def _list(settings: Settings, _: argparse.Namespace) -> int:
    async with opened_pool(settings.database) as pool:
        cards = await billing.rate_cards(pool)
    for card in cards:
        print(
            f"v{card.version}\teffective {card.effective_from.isoformat()}\t{card.currency}"
            f"\t{card.price_count} prices\t{card.note or ''}"
        )
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    month = Month.parse(args.month)
    rows = 0
    started = time.monotonic()
    last_report = started

    def progress(n: int) -> None:
        nonlocal rows, last_report
        rows += n
        if time.monotonic() - last_report >= 1.0:
            last_report = time.monotonic()
            print(f"  {rows:,} rows ...", file=sys.stderr, flush=True)

    partial = args.output.with_name(args.output.name + ".partial")
    async with opened_pool(settings.database) as pool:
        with partial.open("wb") as out:
            async for data in export(
                pool, month, Detail(args.detail), Format(args.format), args.tenant_id, on_rows=progress
            ):
                out.write(data)
    # Only a complete export gets the requested name: a crash leaves `.partial`, never a short file.
    partial.replace(args.output)
    elapsed = time.monotonic() - started
    print(f"{rows:,} rows written to {args.output} in {elapsed:.1f} s", file=sys.stderr)
    return 0


async def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    month = Month.parse(args.month)
    async with opened_pool(settings.database) as pool:
        result = await billing.reconcile(pool, month)
    print(
        f"{result.month}: {result.ledger_rows:,} ledger rows, {result.billable_messages:,} billable messages,"
        f" {len(result.differences):,} differences, {result.pending:,} events pending"
    )
    for d in result.differences[: args.limit]:
        print(
            f"{d.kind}\tmessage {d.message_id}\ttenant {d.tenant_id}"
            f"\texpected {d.expected_billed_at} v{d.expected_version}"
            f" {d.expected_quantity} x {d.expected_unit_price_micros}"
            f"\tledger {d.billed_at} v{d.rate_card_version} {d.quantity} x {d.unit_price_micros}"
        )
    if len(result.differences) > args.limit:
        print(f"... and {len(result.differences) - args.limit:,} more")
    if result.late_usage_rows:
        print(f"{result.late_usage_rows:,} rows billed in {result.month} posted to a later month (it was closed)")
    for a in result.amounts:
        print(
            f"usage\tledger {a.ledger_micros:,} micro-{a.currency}\tbillable {a.billable_micros:,} micro-{a.currency}"
        )
    for e in result.entries:
        print(f"{e.kind}\t{e.count:,} entries\t{e.amount_micros:,} micro-{e.currency}")
    if result.closed:
        print(f"closed; {'still holds' if result.close_intact else 'NO LONGER HOLDS'} the totals recorded at its close")
    return 1 if result.differences or not result.close_intact else 0


async def _close(settings: Settings, args: argparse.Namespace) -> int:
    async with opened_pool(settings.database) as pool:
        done = await closes.close(pool, Month.parse(args.month), args.by, datetime.now(UTC))
    print(f"{done.month} closed at {done.closed_at.isoformat()} by {done.closed_by}: {len(done.totals)} tenant totals")
    return 0


async def _closes(settings: Settings, _: argparse.Namespace) -> int:
    async with opened_pool(settings.database) as pool:
        for done in await closes.closes(pool):
            print(f"{done.month}\tclosed {done.closed_at.isoformat()}\tby {done.closed_by}")
    return 0


async def _entry(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    new = entries.NewEntry(
        kind=EntryKind(args.kind), amount_micros=args.amount_micros, reason=args.reason, created_by=args.by,
        corrects_message_id=args.corrects_message_id, corrects_entry_id=args.corrects_entry_id,
    )  # fmt: skip
    async with opened_pool(settings.database) as pool:
        made = await entries.add(
            pool, args.tenant_id, Month.parse(args.month) if args.month else Month.of(now), new, now
        )
    print(f"{made.kind.value} {made.id}: {made.amount_micros:,} micro-{made.currency} in {made.month}")
    return 0


async def _invoices(settings: Settings, args: argparse.Namespace) -> int:
    month = Month.parse(args.month)
    seller = Party.seller(settings.billing)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rates = eu_rates()
    async with opened_pool(settings.database) as pool:
        found = await invoices.month(pool, month, seller, rates)
    (args.output_dir / f"herald-invoices-{month.label}.csv").write_text(as_csv(found))
    if not args.no_pdf:
        for one in found:
            (args.output_dir / f"{one.number}.pdf").write_bytes(render(one))
    print(f"{len(found)} invoices for {month.label} written to {args.output_dir}")
    return 0
