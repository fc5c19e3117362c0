"""Usage exports in CSV, JSON Lines and Parquet, produced chunk by chunk.

The same stream serves `GET /v1/admin/usage` and `herald billing export`: rows come from a
server-side cursor (`db.usage.usage_rows`) and each chunk is encoded and handed on before the
next is fetched, so memory is bounded by one chunk (Parquet: one row group) whatever the month's
size. Money is integer micro-units in every format. Every value reads back as itself with the
default settings of pandas, polars and spreadsheets: times in one shape in CSV and JSON Lines
(RFC 3339 UTC with microseconds, `2026-10-01T00:00:00.000000Z`; Parquet: timestamp[us, UTC]) and
countries in ISO 3166-1 alpha-3, `ZZZ` for none (`herald.billing.countries`).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from herald.billing.countries import exported
from herald.billing.period import Month
from herald.db import usage


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


class Detail(StrEnum):
    SUMMARY = "summary"
    """Per tenant, kind, channel, category, country and currency: message count and amount."""
    MESSAGES = "messages"
    """One row per ledger row (usage, late usage) or entry (credit, correction)."""


MEDIA_TYPES = {
    Format.CSV: "text/csv",  # Litestar adds the charset to text/*
    Format.JSONL: "application/jsonl",
    Format.PARQUET: "application/vnd.apache.parquet",
}

_STRING = pa.string()
_TIME = pa.timestamp("us", tz="UTC")
_TYPES: dict[str, pa.DataType] = {
    "rate_card_version": pa.int32(), "unit_price_micros": pa.int64(), "quantity": pa.int64(),
    "amount_micros": pa.int64(), "messages": pa.int64(), "PricingQuantity": pa.int64(),
    "BilledCost": pa.decimal128(20, 6),
    "billed_at": _TIME, "BillingPeriodStart": _TIME, "BillingPeriodEnd": _TIME, "ChargePeriodStart": _TIME,
    "ChargePeriodEnd": _TIME, "as_of": _TIME,
}  # fmt: skip
"""Parquet types; every other column is a string."""


def columns(detail: Detail) -> Sequence[str]:
    return usage.DETAIL_COLUMNS if detail is Detail.MESSAGES else usage.SUMMARY_COLUMNS


def _schema(detail: Detail) -> pa.Schema:
    return pa.schema([(name, _TYPES.get(name, _STRING)) for name in columns(detail)])


def filename(month: Month, detail: Detail, fmt: Format, tenant_id: uuid.UUID | None) -> str:
    scope = f"-{tenant_id}" if tenant_id is not None else ""
    return f"herald-usage-{month.label}-{detail.value}{scope}.{fmt.value}"


async def export(
    pool: asyncpg.Pool,
    month: Month,
    detail: Detail,
    fmt: Format,
    tenant_id: uuid.UUID | None = None,
    *,
    chunk: int = 10_000,
    on_rows: Callable[[int], None] | None = None,
    query_timeout: float | None = None,
) -> AsyncIterator[bytes]:
    """The encoded export, as byte chunks. `on_rows(n)` is called after each chunk (progress);
    `query_timeout` bounds each chunk's query (None: the pool's command timeout)."""
    rows = usage.usage_rows(
        pool, month, detail=detail is Detail.MESSAGES, tenant_id=tenant_id, chunk=chunk, query_timeout=query_timeout
    )
    encoder = _ENCODERS[fmt]
    async for data in encoder(_counted(rows, on_rows), detail):
        yield data


async def _counted(
    rows: AsyncIterator[list[asyncpg.Record]], on_rows: Callable[[int], None] | None
) -> AsyncIterator[list[asyncpg.Record]]:
    async for chunk in rows:
        yield chunk
        if on_rows is not None:
            on_rows(len(chunk))


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""Every time in CSV and JSON Lines: `isoformat` drops the fraction when it is zero, and a
column of two shapes is one that pandas' `to_datetime` refuses."""


def _values(row: asyncpg.Record, country_at: int | None) -> list[Any]:
    values = list(row.values())
    if country_at is not None:
        values[country_at] = exported(values[country_at])
    return values


def _country_at(detail: Detail) -> int:
    return list(columns(detail)).index("country")


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(TIME_FORMAT)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def _csv(rows: AsyncIterator[list[asyncpg.Record]], detail: Detail) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(detail))
    country_at = _country_at(detail)
    async for chunk in rows:
        writer.writerows([_text(v) for v in _values(r, country_at)] for r in chunk)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    # The header alone, for an empty month.
    if buffer.tell():
        yield buffer.getvalue().encode()


_JSON = msgspec.json.Encoder(decimal_format="number")


async def _jsonl(rows: AsyncIterator[list[asyncpg.Record]], detail: Detail) -> AsyncIterator[bytes]:
    names = columns(detail)
    country_at = _country_at(detail)
    async for chunk in rows:
        lines = bytearray()
        for r in chunk:
            _JSON.encode_into(dict(zip(names, [_text(v) for v in _values(r, country_at)], strict=True)), lines, -1)
            lines += b"\n"
        yield bytes(lines)


class _Spool(io.RawIOBase):
    """A write-only file that keeps what was written until taken: lets ParquetWriter's output
    be streamed row group by row group."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def _parquet(rows: AsyncIterator[list[asyncpg.Record]], detail: Detail) -> AsyncIterator[bytes]:
    schema = _schema(detail)
    country_at = _country_at(detail)
    spool = _Spool()
    writer = pq.ParquetWriter(spool, schema, compression="zstd")
    try:
        async for chunk in rows:
            table = [_values(r, country_at) for r in chunk]
            arrays = []
            for index, field in enumerate(schema):
                values = [r[index] for r in table]
                if field.type == _STRING:
                    values = [None if v is None else str(v) for v in values]
                arrays.append(pa.array(values, type=field.type))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            yield spool.take()
    finally:
        writer.close()
    yield spool.take()


_ENCODERS: dict[Format, Callable[[AsyncIterator[list[asyncpg.Record]], Detail], AsyncIterator[bytes]]] = {
    Format.CSV: _csv,
    Format.JSONL: _jsonl,
    Format.PARQUET: _parquet,
}
