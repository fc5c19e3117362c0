"""Operations on the stores: `herald migrate|retention|keygen|rewrap-secrets`."""

from __future__ import annotations

import asyncio
import sys

from herald_cli.settings import Settings


def migrate(settings: Settings) -> None:
    """Apply the schema's migrations, wrap what they left in clear (`rewrap-secrets`), create topics."""
    from herald.db.migrate import migrate as apply_migrations
    from herald.kafka.admin import ensure_topics
    from herald.kafka.topics import Names

    async def run() -> None:
        applied = await apply_migrations(settings.database.url)
        wrapped = await _rewrap(settings)
        created = await ensure_topics(settings.kafka, Names(settings.kafka.topic_prefix))
        print(f"migrations applied: {len(applied)}; secrets wrapped: {wrapped}; topics created: {len(created)}")

    if not settings.database.url or not settings.kafka.bootstrap:
        sys.exit("herald migrate needs HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP")
    asyncio.run(run())


def retention(settings: Settings) -> None:
    from datetime import UTC, datetime

    from herald.db.pool import opened_pool
    from herald.db.retention import purge

    async def run() -> None:
        async with opened_pool(settings.database) as pool:
            purged = await purge(pool, datetime.now(UTC), content_days=settings.retention.content_days)
        print(
            f"purged: {purged.recipients} expired recipient entries, {purged.claims} idempotency claims, "
            f"{purged.dead_callbacks} dead callbacks, {purged.retries} handled-retry records, "
            f"{purged.deferrals} deferral notes, {purged.receipts} provider receipt records, "
            f"{purged.content_hours} hours of message content (older than {settings.retention.content_days} days),"
            f" {purged.campaign_rows} campaign rows"
        )

    if not settings.database.url:
        sys.exit("herald retention needs HERALD_DATABASE_URL")
    asyncio.run(run())


def keygen(_: Settings) -> None:
    import base64
    import secrets

    print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))


def rewrap_secrets(settings: Settings) -> None:
    """`herald rewrap-secrets`: every stored secret wrapped under the current KEK (after a KEK
    rotation, with the old KEK still in HERALD_SECRETS_PREVIOUS_KEKS; then it may go)."""
    if not settings.database.url:
        sys.exit("herald rewrap-secrets needs HERALD_DATABASE_URL")
    print(f"secrets rewrapped under the current KEK: {asyncio.run(_rewrap(settings))}")


async def _rewrap(settings: Settings) -> int:
    from herald.db import content_keys, email_identities, sms_config, whatsapp
    from herald.db.pool import opened_pool
    from herald.keyring import KeyRing

    ring = KeyRing(settings.secrets.keys())
    async with opened_pool(settings.database) as pool:
        return (
            await content_keys.rewrap(pool, ring)
            + await whatsapp.rewrap(pool, ring)
            + await sms_config.rewrap(pool, ring)
            + await email_identities.rewrap(pool, ring)
        )
