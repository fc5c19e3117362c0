"""`herald parked list|replay|discard`: the records the sinks refused (`herald_sinks.parking`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from herald.db import parked
from herald.db.pool import opened_pool
from herald.kafka.topics import WORKER_GROUP
from herald.parking import PARKING_GROUPS
from herald_cli.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="parked_command", required=True)
    sub.add_parser("list", help="parked records by consumer group and error type")
    rep = sub.add_parser(
        "replay", help="apply a group's parked records again (the worker's: produce them again); delete those applied"
    )
    rep.add_argument("--group", required=True, choices=PARKING_GROUPS)
    rep.add_argument("--dry-run", action="store_true", help="count what would be replayed; apply nothing")
    dis = sub.add_parser("discard", help="give up a group's parked records for good (those no fix can apply)")
    dis.add_argument("--group", required=True, choices=PARKING_GROUPS)
    dis.add_argument("--error-type", help="only those parked for this error type (as `list` shows it)")
    dis.add_argument("--dry-run", action="store_true", help="count what would be discarded; delete nothing")


def run(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.database.url:
        sys.exit("herald parked needs HERALD_DATABASE_URL")
    asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    async with opened_pool(settings.database) as pool:
        if args.parked_command == "list":
            counts = await parked.counts(pool)
            for c in counts:
                span = f"{c.first_parked_at:%Y-%m-%d %H:%M} .. {c.last_parked_at:%Y-%m-%d %H:%M}"
                print(f"{c.consumer_group}\t{c.error_type}\t{c.records:,}\t{span}")
            print(f"{sum(c.records for c in counts):,} parked records")
            return
        if args.parked_command == "discard":
            n = await parked.discard(pool, args.group, args.error_type, dry_run=args.dry_run)
            if args.dry_run:
                print(f"would discard {n:,} parked records of {args.group}")
            else:
                log.warning("parked records discarded", extra={"group": args.group, "records": n})
                print(f"discarded {n:,} parked records of {args.group}")
            return
        if args.group == WORKER_GROUP:
            from herald_worker import parked as worker_parked

            try:
                done = await worker_parked.replay(settings, pool, dry_run=args.dry_run)
            except worker_parked.NoBroker as exc:
                sys.exit(f"herald parked: {exc}")
        else:
            from herald_sinks import parking

            done = await parking.replay(settings, pool, args.group, dry_run=args.dry_run)
        if args.dry_run:
            print(f"would replay {done.parked:,} parked records of {args.group}")
        else:
            print(
                f"replayed {done.parked:,} parked records of {args.group}:"
                f" {done.applied:,} applied, {done.refused:,} refused again"
            )
        if done.refused:
            sys.exit(1)
