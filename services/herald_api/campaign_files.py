"""A campaign's recipients file, read as it arrives: CSV (RFC 4180, UTF-8) or Parquet.

Rows come out in batches and nothing holds the whole file: CSV is split at record boundaries
as its bytes stream in (a line ends a record when the quotes before it are balanced: RFC 4180
doubles a quote inside a field); Parquet keeps its index at the end of the file, so it is
spooled to a temporary file first and read a row group at a time. The columns are `to`, an
optional `reference`, and the template's params by name.
"""

from __future__ import annotations

import codecs
import csv
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from herald.domain.campaigns import MAX_ROWS
from herald.errors import FieldError, InvalidRequest, PayloadTooLarge

CSV = "text/csv"
PARQUET = ("application/vnd.apache.parquet", "application/x-parquet")
BATCH_ROWS = 2_000
RESERVED = ("to", "reference")


class FileRow(NamedTuple):
    row: int
    """1 for the first row after the header."""
    to: str
    reference: str | None
    params: dict[str, str]
    problem: str | None = None
    """Set when the row itself is malformed (its cells do not match the header)."""


class _Columns:
    def __init__(self, header: list[str]) -> None:
        names = [h.strip() for h in header]
        if "to" not in names:
            raise InvalidRequest.field("recipients", "the file has no `to` column", code="recipients_invalid")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidRequest(
                "a column appears twice", code="recipients_invalid",
                fields=tuple(FieldError(f"recipients.{n}", "appears twice") for n in duplicated),
            )  # fmt: skip
        if any(not n for n in names):
            raise InvalidRequest.field("recipients", "a column has no name", code="recipients_invalid")
        self.names = names
        self._to = names.index("to")
        self._reference = names.index("reference") if "reference" in names else None
        self._params = [(i, n) for i, n in enumerate(names) if n not in RESERVED]

    def row(self, number: int, cells: list[Any]) -> FileRow:
        if len(cells) != len(self.names):
            return FileRow(number, "", None, {}, "row_malformed")
        reference = None if self._reference is None else _text(cells[self._reference]) or None
        return FileRow(number, _text(cells[self._to]), reference, {n: _text(cells[i]) for i, n in self._params})


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _counted(number: int) -> None:
    if number > MAX_ROWS:
        raise PayloadTooLarge(f"a campaign has at most {MAX_ROWS:,} rows", code="too_many_rows",
                              fields=(FieldError("recipients", "too many rows"),))  # fmt: skip


async def csv_rows(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[FileRow]]:
    """Batches of rows from a CSV body. Raises InvalidRequest (`recipients_invalid`) for a file
    that is not UTF-8 CSV with a `to` column, PayloadTooLarge past `MAX_ROWS`."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""  # text after the last complete record
    columns: _Columns | None = None
    number = 0

    def records(text: str, final: bool) -> tuple[list[str], str]:
        """Complete records in `text` (each with its line end) and the rest."""
        out: list[str] = []
        start = 0
        quotes = 0
        position = 0
        while (end := text.find("\n", position)) >= 0:
            quotes += text.count('"', position, end + 1)
            position = end + 1
            if quotes % 2 == 0:
                out.append(text[start:position])
                start = position
                quotes = 0
        rest = text[start:]
        if final and rest.strip():
            out.append(rest)
            rest = ""
        return out, rest

    def parse(lines: list[str]) -> Iterator[list[str]]:
        try:
            yield from csv.reader(lines, strict=True)
        except csv.Error as exc:
            raise InvalidRequest.field("recipients", f"not valid CSV: {exc}", code="recipients_invalid") from None

    async def texts() -> AsyncIterator[tuple[str, bool]]:
        try:
            async for chunk in chunks:
                yield decoder.decode(chunk), False
            yield decoder.decode(b"", final=True), True
        except UnicodeDecodeError:
            raise InvalidRequest.field("recipients", "the file is not UTF-8", code="recipients_invalid") from None

    async for text, final in texts():
        done, pending = records(pending + text, final)
        batch: list[FileRow] = []
        for cells in parse(done):
            if columns is None:
                columns = _Columns(cells)
                continue
            if not cells:
                continue  # a blank line
            number += 1
            _counted(number)
            batch.append(columns.row(number, cells))
        if batch:
            yield batch
    if columns is None:
        raise InvalidRequest.field("recipients", "the file is empty: a header row is needed", code="recipients_invalid")


async def parquet_rows(chunks: AsyncIterator[bytes], spool_dir: str | None = None) -> AsyncIterator[list[FileRow]]:
    """Batches of rows from a Parquet body (every column read as text). Raises as `csv_rows`."""
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        async for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
        try:
            parquet = pq.ParquetFile(spool)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidRequest.field("recipients", f"not a Parquet file: {exc}", code="recipients_invalid") from None
        columns = _Columns(list(parquet.schema_arrow.names))
        _counted(parquet.metadata.num_rows)
        number = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            rows = []
            for values in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                number += 1
                rows.append(columns.row(number, list(values)))
            yield rows
