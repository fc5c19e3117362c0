"""Status callbacks from an HTTP SMS aggregator in Twilio's format.

`POST /v1/providers/twilio/{provider}/status`: a form (`MessageSid`, `MessageStatus`,
`ErrorCode`, …) signed with `X-Twilio-Signature` under that provider's auth token, over the URL
it called (`api.public_url` + the path behind a proxy) and the form's fields. Verified with the
`twilio` library's `RequestValidator`; a request that does not verify, or names no such
provider, is refused (401) and nothing is recorded. A verified one is a receipt like any other
(`herald.domain.receipts`): bound only to a send made through that very provider.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter
from twilio.request_validator import RequestValidator

from herald.domain.receipts import Reported
from herald.domain.status import Status
from herald.errors import InvalidRequest, Unauthenticated
from herald_api.auth import counted_failures
from herald_api.deps import Services

_FINAL = {"delivered": Status.DELIVERED, "read": Status.READ, "undelivered": Status.FAILED, "failed": Status.FAILED}
"""Twilio's MessageStatus values that Herald records; queued, sending, sent and accepted add nothing."""
_REASONS = {"30004": "opted_out", "30006": "invalid_number", "30007": "rejected", "21610": "opted_out",
            "21211": "invalid_number"}  # fmt: skip
"""Twilio error codes (https://www.twilio.com/docs/api/errors) that name one of Herald's reasons;
any other failure is `undeliverable`, with Twilio's code beside it."""
ProviderName = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


class TwilioCallbackController(Controller):
    path = "/v1/providers/twilio"
    tags = ["providers"]

    @post("/{provider:str}/status", status_code=200, summary="Status callback in Twilio's format (X-Twilio-Signature)")
    async def status(
        self,
        provider: FromPath[ProviderName],
        request: Request[Any, Any, Any],
        svc: NamedDependency[Services],
    ) -> None:
        with counted_failures(request):
            form = {k: str(v) for k, v in (await request.form()).items()}
            token = await svc.sms_config.twilio_token(provider)
            public = svc.settings.api.public_url
            url = f"{public.rstrip('/')}{request.url.path}" if public else str(request.url)
            signature = request.headers.get("x-twilio-signature", "")
            if token is None or not signature or not RequestValidator(token).validate(url, form, signature):
                raise Unauthenticated("bad or missing X-Twilio-Signature", code="invalid_signature")
        sid, reported = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
        if not sid or len(sid) > 128:
            raise InvalidRequest.field("MessageSid", "is missing", code="invalid_receipt")
        status = _FINAL.get(reported)
        if status is None:
            return  # an intermediate status: nothing to record
        code = form.get("ErrorCode") or None
        failed = status is Status.FAILED
        await svc.receipts.record(f"sms:{provider}", [Reported(
            sid, status, reason=_REASONS.get(code or "") if failed else None,
            provider_error=f"{reported} {code}" if failed and code else (reported if failed else None),
        )])  # fmt: skip
