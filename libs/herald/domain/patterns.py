"""Regular expressions that must match a whole string, written once.

In Python's `re`, `$` also matches just before a trailing newline, so `^[a-z]+$` accepts
`"otp\\n"` (a template name, a month, a URL with a newline after it). `\\Z` fixes that in Python
but means a literal `Z` to the ECMA-262 regexes of OpenAPI clients and schema-driven fuzzers.
`$(?!\\n)` means "the very end" to both, so every pattern that bounds a value uses `whole`.
"""

from __future__ import annotations

import re


def whole(body: str) -> str:
    """A pattern matching exactly `body`, from the first character to the last (see above)."""
    return f"^(?:{body})$(?!\\n)"


def compiled(body: str) -> re.Pattern[str]:
    return re.compile(whole(body))
