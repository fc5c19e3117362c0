"""What the handlers need, built once at startup (`build`) and injected as the `svc` dependency."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from herald.db.content_keys import ContentKeys
from herald.domain.limits import RecipientHasher
from herald.email.unsubscribe import Tokens
from herald.kafka.producer import Producer
from herald.keyring import KeyRing
from herald.whatsapp.graph import Graph
from herald_api.auth import KeyAuthenticator
from herald_api.ratelimit import FailedAuthLimiter, KeyRateLimiter
from herald_api.services.billing import Billing
from herald_api.services.campaigns import Campaigns
from herald_api.services.cancelling import Cancelling
from herald_api.services.catalogue import Catalogue
from herald_api.services.email import Email
from herald_api.services.invoicing import Invoicing
from herald_api.services.reading import Reading
from herald_api.services.receipts import Receipts
from herald_api.services.sending import Sender, TemplateCache
from herald_api.services.sms_config import SmsConfig
from herald_api.services.suppressions import Suppressions
from herald_api.services.tenancy import Tenancy
from herald_api.services.whatsapp import WhatsApp
from herald_api.settings import ApiConfig


@dataclass(frozen=True)
class Services:
    settings: ApiConfig
    pool: asyncpg.Pool
    """For readiness only: every request reaches the database through a service below."""
    authenticator: KeyAuthenticator
    failed_auth: FailedAuthLimiter
    """Failed authentications per client address (keys, admin token, provider signatures)."""
    sender: Sender
    campaigns: Campaigns
    content_keys: ContentKeys
    catalogue: Catalogue
    reading: Reading
    cancelling: Cancelling
    tenancy: Tenancy
    billing: Billing
    invoicing: Invoicing
    receipts: Receipts
    whatsapp: WhatsApp
    suppressions: Suppressions
    sms_config: SmsConfig
    email: Email


def build(settings: ApiConfig, pool: asyncpg.Pool, producer: Producer, graph: Graph) -> Services:
    """Accepted messages are produced on `producer`: a client waits for its ack (`kafka.linger_ms`)."""
    template_cache = TemplateCache(pool, settings.api.template_cache_seconds)
    ring = KeyRing(settings.secrets.keys())
    keys = ContentKeys(pool, ring, settings.retention.content_days)
    receipts = Receipts(pool, producer)
    hasher = RecipientHasher(settings.secrets.keys())
    whatsapp = WhatsApp(pool, ring, graph, template_cache, receipts)
    email = Email(pool, ring, hasher, Tokens(settings.secrets.keys()), settings.email, receipts)
    sender = Sender(producer, template_cache, pool, keys, hasher, whatsapp.is_connected, email.sending_identity)
    return Services(
        settings=settings,
        pool=pool,
        authenticator=KeyAuthenticator(
            pool, settings.api.auth_cache_seconds, KeyRateLimiter(settings.api.key_requests_per_second)
        ),
        failed_auth=FailedAuthLimiter(settings.api.failed_auth_per_minute),
        sender=sender,
        campaigns=Campaigns(pool, sender, keys, hasher, settings.campaigns.rate_share),
        content_keys=keys,
        catalogue=Catalogue(pool, template_cache, whatsapp),
        reading=Reading(pool),
        cancelling=Cancelling(pool, producer),
        tenancy=Tenancy(pool, settings.callbacks),
        billing=Billing(pool, settings.database.command_timeout_seconds),
        invoicing=Invoicing(pool, settings.billing),
        receipts=receipts,
        whatsapp=whatsapp,
        suppressions=Suppressions(pool, hasher),
        sms_config=SmsConfig(pool, ring),
        email=email,
    )
