"""Headers for a file the caller downloads (RFC 6266)."""

from __future__ import annotations

import re
from urllib.parse import quote

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str) -> dict[str, str]:
    """`content-disposition` naming `filename` and `cache-control: no-store` (exports carry billing
    and recipient data). The name may hold anything a tenant typed (an external customer id): HTTP
    headers are Latin-1 and a quote ends a quoted-string, so the plain `filename` is an ASCII
    fallback and `filename*` (RFC 5987) carries the exact name."""
    fallback = _UNSAFE.sub("_", filename)
    disposition = f'attachment; filename="{fallback}"'
    if fallback != filename:
        disposition += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return {"content-disposition": disposition, "cache-control": "no-store"}
