"""Email for a tenant: the identities it sends from (DKIM keys, DNS verification), the identity
a send goes from, and one-click unsubscribe."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
import dns.asyncresolver
import dns.exception
import dns.resolver
import msgspec

from herald import metrics
from herald.caches import TTLCache
from herald.db import callbacks, tenants
from herald.db import email_identities as store
from herald.db import receipts as receipt_store
from herald.db import suppressions as suppression_store
from herald.domain import recipients
from herald.domain.email import Identity, IdentityStatus, published
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.receipts import Reported
from herald.domain.status import Status
from herald.domain.suppressions import (
    CALLBACK_STATUS,
    SuppressedCallbackV1,
    SuppressionReason,
    callback_key,
)
from herald.email import keys, sns
from herald.email.reports import Kind, Report, from_ses
from herald.email.unsubscribe import BadToken, Tokens
from herald.errors import Conflict, InvalidRequest, NotFound, Unauthenticated, Unavailable
from herald.keyring import KeyRing
from herald.settings import EmailSettings
from herald_api.services.receipts import Receipts

log = logging.getLogger(__name__)
LOOKUP_TIMEOUT_SECONDS = 5.0
"""A DNS lookup of a DKIM record, a fetch of SNS's certificate or subscription URL."""
SMTP_PROVIDER = "smtp"
SES_PROVIDER = "ses"
"""The names the worker's sends are recorded under (`herald_worker.email.smtp`, `ses`)."""


class Email:
    def __init__(
        self, pool: asyncpg.Pool, ring: KeyRing, hasher: RecipientHasher, tokens: Tokens, settings: EmailSettings,
        receipts: Receipts,
    ) -> None:
        self._receipts = receipts
        self._settings = settings
        self._certs: dict[str, bytes] = {}
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT_SECONDS))
        self._pool = pool
        self._ring = ring
        self._hasher = hasher
        self._tokens = tokens
        self._resolver = dns.asyncresolver.Resolver(configure=not settings.dns_server)
        if settings.dns_server:
            host, _, port = settings.dns_server.rpartition(":")
            self._resolver.nameservers = [host]
            self._resolver.port = int(port)
        self._resolver.lifetime = LOOKUP_TIMEOUT_SECONDS
        self._sending: TTLCache[tuple[uuid.UUID, str | None], Identity | None] = TTLCache(
            settings.identity_cache_seconds
        )

    async def put_identity(
        self, tenant_id: uuid.UUID, from_address: str, from_name: str | None, selector: str, private_key: str | None
    ) -> Identity:
        """Create the identity with a new DKIM key (or the tenant's own, `private_key` as PEM), or
        replace its key; it is `pending` until `verify` finds the key's record. Raises InvalidRequest
        for a key that is not a usable RSA private key."""
        try:
            pem = keys.generate() if private_key is None else keys.imported(private_key)
        except keys.BadKey as exc:
            raise InvalidRequest.field("dkim_private_key", str(exc), code="invalid_dkim_key") from None
        made = await store.put(
            self._pool, self._ring, tenant_id, from_address, from_name, selector, keys.public(pem), pem
        )
        self._sending.clear()
        return made

    async def identities(self, tenant_id: uuid.UUID) -> list[Identity]:
        return await store.listed(self._pool, tenant_id)

    async def identity(self, tenant_id: uuid.UUID, from_address: str) -> Identity:
        found = await store.get(self._pool, tenant_id, from_address)
        if found is None:
            raise NotFound("no such email identity", code="email_identity_not_found")
        return found

    async def remove(self, tenant_id: uuid.UUID, from_address: str) -> None:
        if not await store.remove(self._pool, tenant_id, from_address):
            raise NotFound("no such email identity", code="email_identity_not_found")
        self._sending.clear()

    async def verify(self, tenant_id: uuid.UUID, from_address: str) -> Identity:
        """Look the DKIM record up in DNS; `verified` once it publishes the identity's key. Raises
        Conflict (`dkim_record_not_found`, `dkim_record_mismatch`) while it does not."""
        identity = await self.identity(tenant_id, from_address)
        if identity.status is IdentityStatus.VERIFIED:
            return identity
        (record,) = identity.dns_records()
        try:
            answer = await self._resolver.resolve(record.name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise Conflict(f"no TXT record at {record.name}", code="dkim_record_not_found") from None
        except dns.exception.DNSException as exc:
            raise Conflict(f"the DNS lookup of {record.name} failed ({type(exc).__name__}); try again",
                           code="dkim_record_not_found") from None  # fmt: skip
        texts = [b"".join(r.strings).decode(errors="replace") for r in answer]
        if not published(texts, identity.public_key):
            raise Conflict(f"the TXT record at {record.name} does not publish this identity's key",
                           code="dkim_record_mismatch")  # fmt: skip
        done = await store.verified(self._pool, tenant_id, from_address, identity.public_key)
        if done is None:  # its key was replaced meanwhile: the new one needs its own record
            raise Conflict("the identity's key changed during verification", code="dkim_record_mismatch")
        self._sending.clear()
        return done

    async def sending_identity(self, tenant_id: uuid.UUID, from_address: str | None) -> Identity | None:
        """The verified identity a send goes from: `from_address`'s, or the tenant's first."""

        async def load() -> Identity | None:
            if from_address is None:
                return await store.sending(self._pool, tenant_id)
            found = await store.get(self._pool, tenant_id, from_address)
            return found if found is not None and found.status is IdentityStatus.VERIFIED else None

        return await self._sending.get((tenant_id, from_address), load)

    async def reported(self, message_id: uuid.UUID, domain: str, reports: list[Report]) -> bool:
        """Act on what came back to a message's bounce address: a delivery report is recorded as
        the relay's receipt (`delivered`, or `failed` with its status), a hard bounce and a
        complaint suppress the recipient for the tenant's marketing email; a delay changes
        nothing (the relay is retrying). False while the send itself is not recorded yet (a
        report can outrun it): the relay is asked to try again later."""
        return await self._act(SMTP_PROVIDER, f"<{message_id}@{domain}>", reports)

    async def ses_notification(self, body: bytes) -> None:
        """An SNS message from SES's event destination: believed only when its signature verifies
        under a certificate at a trusted URL and its topic is configured (else Unauthenticated or
        InvalidRequest, nothing changes); a subscription is confirmed; an event acts like a
        delivery report (`reported`). Raises Unavailable while the send is not recorded yet, so
        SNS delivers it again later."""
        try:
            message = sns.parse(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest("not an SNS message", code="invalid_notification") from exc
        if message.TopicArn not in self._settings.ses_notification_topics:
            raise InvalidRequest.field("TopicArn", "is not a topic Herald subscribes to", code="unknown_topic")
        await self._verified(message)
        if message.Type is sns.Kind.SUBSCRIPTION_CONFIRMATION:
            url = message.SubscribeURL
            if url is None or not sns.trusted_sns_url(url, self._settings.sns_trusted_prefixes):
                raise InvalidRequest.field("SubscribeURL", "is not an SNS address", code="invalid_notification")
            async with self._http.get(url) as confirmed:
                if confirmed.status != 200:
                    raise Unavailable("SNS did not confirm the subscription; it will ask again", code="sns_unavailable")
            return
        if message.Type is not sns.Kind.NOTIFICATION:
            return
        try:
            ses_id, reports = from_ses(message.Message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest.field("Message", "is not an SES event", code="invalid_notification") from exc
        if reports and not await self._act(SES_PROVIDER, ses_id, reports):
            raise Unavailable("the send this event is about is not recorded yet", code="send_not_recorded",
                              retry_after=5)  # fmt: skip

    async def _verified(self, message: sns.SnsMessage) -> None:
        url = message.SigningCertURL
        if not sns.trusted_cert_url(url, self._settings.sns_trusted_prefixes):
            raise Unauthenticated("SigningCertURL is not an SNS certificate", code="invalid_signature")
        cert = self._certs.get(url)
        if cert is None:
            try:
                async with self._http.get(url) as answer:
                    if answer.status != 200:
                        raise Unavailable("the SNS signing certificate could not be fetched", code="sns_unavailable")
                    cert = await answer.read()
            except aiohttp.ClientError as exc:
                raise Unavailable("the SNS signing certificate could not be fetched", code="sns_unavailable") from exc
            self._certs[url] = cert
        try:
            sns.verify(message, cert)
        except sns.Unverified as exc:
            raise Unauthenticated(f"the SNS signature does not verify ({exc})", code="invalid_signature") from None

    async def _act(self, provider: str, sent_as: str, reports: list[Report]) -> bool:
        send = await receipt_store.send_of(self._pool, provider, sent_as)
        if send is None:
            return False
        tenant_id, message_id = send
        receipts = [
            Reported(
                sent_as, Status.DELIVERED if r.kind is Kind.DELIVERED else Status.FAILED,
                provider_error=" ".join(str(x) for x in (r.reply, r.status) if x) or None,
            )
            for r in reports
            if r.kind in (Kind.DELIVERED, Kind.FAILED)
        ]  # fmt: skip
        for report in reports:
            metrics.EMAIL_REPORTS.labels(report.kind.value if not report.hard else "hard_bounce").inc()
            reason = SuppressionReason.COMPLAINED if report.kind is Kind.COMPLAINED else SuppressionReason.BOUNCED
            if (report.hard or report.kind is Kind.COMPLAINED) and report.recipient is not None:
                try:
                    address = recipients.normalize(Channel.EMAIL, report.recipient).address
                except InvalidRequest:  # a report naming no address Herald could have sent to
                    continue
                await self._suppress(tenant_id, message_id, address, reason)
        if receipts:
            await self._receipts.record(provider, receipts)
        return True

    async def close(self) -> None:
        await self._http.close()

    async def unsubscribe(self, token: str) -> None:
        """RFC 8058 one-click: the token's recipient is suppressed for its tenant's marketing
        email, at once; again is a no-op. Raises NotFound for a token Herald did not mint."""
        try:
            what = self._tokens.open(token)
        except BadToken:
            raise NotFound("no such unsubscribe link", code="unsubscribe_link_not_found") from None
        try:
            reason = SuppressionReason.UNSUBSCRIBED
            added = await self._suppress(what.tenant_id, what.message_id, what.recipient, reason)
        except asyncpg.ForeignKeyViolationError:  # the tenant is gone: nothing is sent in its name
            raise NotFound("no such unsubscribe link", code="unsubscribe_link_not_found") from None
        if added:
            metrics.EMAIL_UNSUBSCRIBES.inc()

    async def _suppress(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, address: str, reason: SuppressionReason
    ) -> bool:
        """Suppress `address` for the tenant's marketing email; when that is new, tell the tenant
        (a `recipient.suppressed` callback naming the message, if it has a callback URL). Whether
        it was new."""
        candidate = suppression_store.candidate(self._hasher, tenant_id, Channel.EMAIL, address)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await suppression_store.add(conn, tenant_id, [candidate], reason):
                return False
            if await tenants.callback_config(conn, tenant_id) is not None:
                body = SuppressedCallbackV1(message_id, Channel.EMAIL, reason, candidate.entry_id, datetime.now(UTC))
                await callbacks.record(conn, [callbacks.Pending(
                    callback_key(message_id), tenant_id, CALLBACK_STATUS, msgspec.json.encode(body), rank=0,
                    follows_sent=False,
                )])  # fmt: skip
        return True
