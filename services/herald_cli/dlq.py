"""`herald dlq replay`: re-queue dead letters as new messages (`herald_worker.replay`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import datetime

from herald_cli.settings import Settings
from herald_worker.replay import Filters, replay


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dlq_command", required=True)
    rep = sub.add_parser("replay", help="re-queue dead letters as new messages (see --dry-run)")
    rep.add_argument("--tenant-id", type=uuid.UUID)
    rep.add_argument("--reason", help="exact reason, or a prefix ending in * (e.g. 'provider_unavailable*')")
    rep.add_argument("--since", type=datetime.fromisoformat, help="failed at or after (ISO 8601 with offset)")
    rep.add_argument("--until", type=datetime.fromisoformat, help="failed before (ISO 8601 with offset)")
    rep.add_argument("--dry-run", action="store_true", help="count what would be replayed; produce nothing")


def run(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.kafka.bootstrap or not settings.database.url:
        sys.exit("herald dlq needs HERALD_KAFKA_BOOTSTRAP and HERALD_DATABASE_URL (content keys)")
    for name in ("since", "until"):
        value = getattr(args, name)
        if value is not None and value.tzinfo is None:
            sys.exit(f"herald dlq: --{name} needs a UTC offset (e.g. 2026-11-28T00:00:00+00:00)")
    filters = Filters(
        tenant_id=args.tenant_id,
        reason=args.reason,
        since_ms=None if args.since is None else int(args.since.timestamp() * 1000),
        until_ms=None if args.until is None else int(args.until.timestamp() * 1000),
    )
    done = asyncio.run(replay(settings, filters, dry_run=args.dry_run))
    verb = "would replay" if args.dry_run else "replayed"
    replayable = done.matched - done.purged
    print(
        f"read {done.read:,} dead letters, {done.matched:,} matched, {verb} {replayable:,},"
        f" {done.purged:,} past content retention (not replayable)"
    )
