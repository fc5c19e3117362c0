"""One provider account at an HTTP aggregator in Twilio's format (Programmable Messaging).

`POST {endpoint}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth (the Account
SID and auth token), a form body `To`, `From`, `Body`, `StatusCallback` (Herald's
`/v1/providers/twilio/{provider}/status`, where the callbacks are verified by their
`X-Twilio-Signature`). The aggregator splits and bills the segments itself.

Outcomes (Twilio's error codes, https://www.twilio.com/docs/api/errors):
* 2xx with a `sid`: accepted; the status arrives by callback;
* no connection (refused, unreachable): retryable `provider_unavailable`, untaken;
* 5xx, or 401/20003 (credentials refused: this account is out, not the message): retryable,
  untaken (Twilio answers them without creating the message);
* 429 / 20429: retryable `throttled`, untaken, with its Retry-After;
* 400 / 21211, 21614 (not a mobile number): `invalid_number`; 21610 (the recipient replied STOP
  to this sender): `opted_out`; any other 4xx: `rejected`;
* a timeout or a connection dropped after the request went out: retryable, *not* untaken.
"""

from __future__ import annotations

import base64

import aiohttp
import msgspec

from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.domain.sms_routing import SmsProvider
from herald_worker.providers.base import Accepted, PermanentError, RetryableError
from herald_worker.providers.carrier import retry_after

_PERMANENT = {21211: Reason.INVALID_NUMBER, 21614: Reason.INVALID_NUMBER, 21610: Reason.OPTED_OUT}


class _Created(msgspec.Struct, frozen=True):
    sid: str


class _Error(msgspec.Struct, frozen=True):
    code: int | None = None


class TwilioProvider:
    def __init__(
        self, config: SmsProvider, auth_token: str, callback_base: str, timeout: float, connections: int
    ) -> None:
        """`callback_base`: Herald's public `/v1/providers/twilio` URL; each send's callback goes
        to `<callback_base>/<provider name>/status`."""
        self.config = config
        self.name = f"sms:{config.name}"
        self._url = f"{config.endpoint.rstrip('/')}/2010-04-01/Accounts/{config.account}/Messages.json"
        self._callback = f"{callback_base.rstrip('/')}/{config.name}/status"
        basic = base64.b64encode(f"{config.account}:{auth_token}".encode()).decode()
        self._session = aiohttp.ClientSession(
            headers={"authorization": f"Basic {basic}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=connections),
        )

    async def send(self, message: OutboundMessage) -> Accepted:
        form = {"To": message.to, "From": message.sender or self.config.sender, "Body": message.body,
                "StatusCallback": self._callback}  # fmt: skip
        try:
            async with self._session.post(self._url, data=form) as response:
                status, headers, content = response.status, response.headers, await response.read()
        except aiohttp.ClientConnectorError:
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True) from None
        except (TimeoutError, aiohttp.ClientError):
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, lost=True) from None  # it may have it
        if 200 <= status < 300:
            try:
                return Accepted(msgspec.json.decode(content, type=_Created).sid, provider=self.name)
            except msgspec.DecodeError:
                raise RetryableError(Reason.PROVIDER_BAD_RESPONSE) from None  # accepted, unreadable
        if status >= 500 or status == 401:
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, retry_after(headers), untaken=True)
        if status == 429:
            raise RetryableError(Reason.THROTTLED, retry_after(headers), untaken=True)
        try:
            code = msgspec.json.decode(content, type=_Error).code
        except msgspec.DecodeError:
            code = None
        raise PermanentError(_PERMANENT.get(code or 0, Reason.REJECTED))

    async def close(self) -> None:
        await self._session.close()
