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
