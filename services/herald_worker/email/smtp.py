"""Email through an SMTP relay (aiosmtplib): a pool of open connections, one mail at a time on each.

Each mail is one transaction: `MAIL FROM` (the VERP bounce address), `RCPT TO`, `DATA` (the
signed message, `mime.build`). The relay's replies decide the outcome (RFC 5321 §4.2.1 and the
enhanced codes of RFC 3463):

* 250 after DATA: accepted; email has no delivery receipt, so acceptance by the relay is final;
* 4xx: transient, retried through Herald's retry path: 4.7.x and 421/452 are the relay
  throttling (`throttled`, the relay's capacity gate shuts), 450 a busy mailbox
  (`recipient_busy`), any other `provider_unavailable`;
* 5xx: permanent, with the reply kept in the log: 5.1.x (no such mailbox or domain) and 553
  `undeliverable`, anything else `rejected`;
* a connection that cannot be opened, or that breaks before DATA is sent: retryable, untaken
  (the relay has nothing); one that breaks or times out after DATA went out, before the reply:
  retryable, *not* untaken (the relay may have it). A retry then re-sends the same Message-ID,
  which mailboxes (and the relay double's view of them) count once.

Connections are pooled (`connections.RelayPool`: the relay's connection limit held across
workers, idle ones closed); a broken one is dropped and a new one opened on the next send. No
connection within the timeout (every slot held by other workers) is untaken too.
"""

from __future__ import annotations

import logging
import uuid

import aiosmtplib

from herald import metrics
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.email.bounces import BounceAddresses
from herald.settings import EmailSettings
from herald_worker.email.compose import Composer
from herald_worker.email.connections import Connection, NoConnection, RelayPool, Slots
from herald_worker.email.mime import message_id
from herald_worker.providers.base import Accepted, PermanentError, RetryableError

log = logging.getLogger(__name__)


def _transient(code: int, text: str) -> Reason:
    if code in (421, 452) or text.startswith("4.7"):
        return Reason.THROTTLED
    if code == 450:
        return Reason.RECIPIENT_BUSY
    return Reason.PROVIDER_UNAVAILABLE


def _permanent(code: int, text: str) -> Reason:
    return Reason.UNDELIVERABLE if code == 553 or text.startswith("5.1.") else Reason.REJECTED


class SmtpProvider:
    name = "smtp"

    def __init__(
        self, settings: EmailSettings, composer: Composer, bounces: BounceAddresses, slots: Slots | None = None
    ) -> None:
        """The relay's capacity (rate, throttling) is held by the `Throttled` gate it is wrapped in;
        its connection limit across workers by `slots` (None: each worker's `smtp_connections` only)."""
        self._settings = settings
        self._composer = composer
        self._bounces = bounces
        metrics.every_series(metrics.EMAIL_SMTP_REPLIES, metrics.SmtpReply)
        self._pool: RelayPool[aiosmtplib.SMTP] = RelayPool(
            self._connect, _disconnect, lambda client: client.is_connected, size=settings.smtp_connections,
            slots=slots, wait_seconds=settings.smtp_timeout_seconds, idle_seconds=settings.smtp_idle_seconds,
        )  # fmt: skip

    async def send(self, message: OutboundMessage) -> Accepted:
        mail = await self._composer.compose(message)
        await self._transaction(self._bounces.address(message.id, mail.identity.domain), message.id,
                                message.to, mail.raw)  # fmt: skip
        metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.ACCEPTED).inc()
        # With delivery reports, the relay's acceptance is `sent`; its report says delivered or bounced.
        final = not self._settings.smtp_delivery_reports
        return Accepted(provider_message_id=message_id(str(message.id), mail.identity), delivered=final)

    async def _transaction(self, sender: str, herald_id: uuid.UUID, to: str, raw: bytes) -> None:
        try:
            connection: Connection[aiosmtplib.SMTP] = await self._pool.acquire()
        except NoConnection as exc:
            metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.NO_CONNECTION).inc()
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.DROPPED).inc()
            log.warning("smtp relay unreachable", extra={"error": type(exc).__name__})
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True) from exc
        client = connection.client
        keep = data_sent = False
        try:
            if self._settings.smtp_delivery_reports:  # RFC 3461: a report on success and on failure
                await client.mail(sender, options=["RET=HDRS", f"ENVID={herald_id.hex}"])
                await client.rcpt(to, options=["NOTIFY=SUCCESS,FAILURE,DELAY"])
            else:
                await client.mail(sender)
                await client.rcpt(to)
            data_sent = True
            await client.data(raw)
            keep = True
        except aiosmtplib.SMTPResponseException as exc:
            keep = await self._reset(client)
            self._refused(exc)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.DROPPED).inc()
            if data_sent:  # the mail may be with the relay: retried, not passed to another provider
                log.warning("smtp relay connection lost after DATA", extra={"error": type(exc).__name__})
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, lost=True) from exc
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True) from exc
        finally:
            await self._pool.give_back(connection, keep)

    def _refused(self, exc: aiosmtplib.SMTPResponseException) -> None:
        code, text = exc.code, exc.message
        if 400 <= code < 500:
            metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.TRANSIENT).inc()
            # Refused before DATA was taken, or DATA answered 4xx: the relay does not have it.
            raise RetryableError(_transient(code, text), untaken=True) from exc
        metrics.EMAIL_SMTP_REPLIES.labels(metrics.SmtpReply.PERMANENT).inc()
        # The reply's code and enhanced status only: its text may quote the address.
        status = text.split(" ", 1)[0] if text[:1].isdigit() else ""
        log.info("smtp relay refused a mail", extra={"code": code, "status": status})
        raise PermanentError(_permanent(code, text), f"{code} {status}".strip()) from exc

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """After a refusal the connection is reusable once RSET is answered."""
        if not client.is_connected:
            return False
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return False
        return True

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_tls == "tls", start_tls=s.smtp_tls == "starttls",
            username=s.smtp_username or None, password=s.smtp_password or None,
            cert_bundle=s.smtp_tls_ca_file or None,
        )  # fmt: skip
        await client.connect()
        return client

    async def close(self) -> None:
        await self._pool.close()


async def _disconnect(client: aiosmtplib.SMTP, polite: bool) -> None:
    try:
        if polite and client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()
