from __future__ import annotations

import pytest

from herald.domain.callback_urls import validate
from herald.errors import InvalidRequest


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://127.0.0.1/cb", "callback_url_not_allowed"),
        ("https://localhost/cb", "callback_url_not_allowed"),
        ("https://10.1.2.3/cb", "callback_url_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "callback_url_not_allowed"),  # cloud metadata
        ("https://[::1]/cb", "callback_url_not_allowed"),
        ("http://8.8.8.8/cb", "callback_url_invalid"),  # plain http in production
        ("https://user:pw@8.8.8.8/cb", "callback_url_invalid"),
        ("ftp://8.8.8.8/cb", "callback_url_invalid"),
        # What the parser or the resolver raise on is a 422, not a 500 (found by the fuzzer).
        ("https://\u00f6\U000d2276\u0117[", "callback_url_invalid"),  # an unbalanced IPv6 bracket
        ("https://8.8.8.8:99999/cb", "callback_url_invalid"),
        ("https://8.8.8.8:x/cb", "callback_url_invalid"),
        ("https://a" + "b" * 70 + ".example/cb", "callback_url_invalid"),  # IDNA refuses a 71-char label
    ],
)
async def test_production_refuses_non_public_or_unsafe_urls(url: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate(url, allow_private=False)
    assert caught.value.code == code


async def test_public_https_address_is_allowed() -> None:
    await validate("https://8.8.8.8/hooks/herald", allow_private=False)  # a literal: no DNS needed


async def test_development_allows_loopback() -> None:
    await validate("http://127.0.0.1:9000/cb", allow_private=True)


async def test_development_still_refuses_a_url_that_cannot_be_called() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validate("http://127.0.0.1:70000/cb", allow_private=True)
    assert caught.value.code == "callback_url_invalid"
