"""Email through Amazon SES v2 (`SendEmail`, raw content), signed with SigV4 by aiobotocore.

The mail is the same signed MIME the relay would get (`compose.Composer`); SES adds its own DKIM
signature for domains verified with it and its own Message-ID. Answers (SES v2 API reference,
"SendEmail" errors) become Herald's outcomes:

* 200 with a `MessageId`: accepted, and final: SES reports deliveries, bounces and complaints
  through its event destinations (SNS), which Herald does not read yet;
* `TooManyRequestsException` (429): `throttled`, untaken (the send gate shuts); `LimitExceeded
  Exception` (the daily quota): `quota_exhausted`, untaken; `SendingPausedException`,
  `AccountSuspendedException` and any 5xx: `provider_unavailable`, untaken;
* `MessageRejected`, `MailFromDomainNotVerifiedException`, `BadRequestException`,
  `NotFoundException` and any other 4xx: permanent, `rejected`, with SES's status and code kept;
* no connection: untaken; a read timeout or a connection lost after the request went out:
  retryable, *not* untaken (SES may have taken it).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from herald import metrics
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.settings import EmailSettings
from herald_worker.email.compose import Composer
from herald_worker.providers.base import Accepted, PermanentError, RetryableError

log = logging.getLogger(__name__)
_UNTAKEN = {
    "TooManyRequestsException": Reason.THROTTLED, "Throttling": Reason.THROTTLED,
    "LimitExceededException": Reason.QUOTA_EXHAUSTED, "SendingPausedException": Reason.PROVIDER_UNAVAILABLE,
    "AccountSuspendedException": Reason.PROVIDER_UNAVAILABLE,
}  # fmt: skip


class SesProvider:
    name = "ses"

    def __init__(self, settings: EmailSettings, composer: Composer) -> None:
        """The account's sending rate (and SES's throttling) is held by the `Throttled` gate it is
        wrapped in."""
        self._settings = settings
        self._composer = composer
        metrics.every_series(metrics.EMAIL_SES_ANSWERS, metrics.SesAnswer)
        self._stack = contextlib.AsyncExitStack()
        # botocore's clients are built at run time from the service model: untyped (Any).
        self._client: Any = None

    async def _ses(self) -> Any:
        if self._client is None:
            s = self._settings
            self._client = await self._stack.enter_async_context(get_session().create_client(
                "sesv2", region_name=s.ses_region, endpoint_url=s.ses_endpoint_url or None,
                aws_access_key_id=s.ses_access_key_id or None, aws_secret_access_key=s.ses_secret_access_key or None,
                # Herald retries (its retry path knows untaken from maybe-taken); botocore must not.
                config=AioConfig(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                                 read_timeout=s.smtp_timeout_seconds, max_pool_connections=s.smtp_connections),
            ))  # fmt: skip
        return self._client

    async def send(self, message: OutboundMessage) -> Accepted:
        mail = await self._composer.compose(message)
        configuration = self._settings.ses_configuration_set
        extra = {"ConfigurationSetName": configuration} if configuration else {}
        try:
            answer = await (await self._ses()).send_email(
                FromEmailAddress=mail.identity.from_address, Destination={"ToAddresses": [message.to]},
                Content={"Raw": {"Data": mail.raw}}, **extra,
            )  # fmt: skip
        except ClientError as exc:
            raise self._refused(exc) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            metrics.EMAIL_SES_ANSWERS.labels(metrics.SesAnswer.UNREACHABLE).inc()
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True) from exc
        except (ReadTimeoutError, ConnectionClosedError, OSError) as exc:
            metrics.EMAIL_SES_ANSWERS.labels(metrics.SesAnswer.LOST).inc()
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, lost=True) from exc
        metrics.EMAIL_SES_ANSWERS.labels(metrics.SesAnswer.ACCEPTED).inc()
        # With SES's events published to Herald, its acceptance is `sent`; the event decides.
        return Accepted(provider_message_id=answer["MessageId"], delivered=not self._settings.ses_notifications)

    def _refused(self, exc: ClientError) -> RetryableError | PermanentError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if (reason := _UNTAKEN.get(code)) is not None or status >= 500:
            metrics.EMAIL_SES_ANSWERS.labels(metrics.SesAnswer.TRANSIENT).inc()
            return RetryableError(reason or Reason.PROVIDER_UNAVAILABLE, untaken=True)
        metrics.EMAIL_SES_ANSWERS.labels(metrics.SesAnswer.REJECTED).inc()
        log.info("ses refused a mail", extra={"status": status, "code": code})
        return PermanentError(Reason.REJECTED, f"{status} {code}".strip())

    async def close(self) -> None:
        await self._stack.aclose()
