"""`herald api`: the HTTP boundary (Litestar + msgspec)."""
