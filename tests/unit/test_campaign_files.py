"""Reading a campaign's file as it streams in: records split correctly at any chunk boundary."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from herald.domain import campaigns
from herald.errors import InvalidRequest, PayloadTooLarge
from herald_api.campaign_files import FileRow, csv_rows, parquet_rows


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _read(data: bytes, size: int) -> list[FileRow]:
    return [row async for batch in csv_rows(_chunks(data, size)) for row in batch]


# RFC 4180: a quoted field may hold commas, doubled quotes and line breaks; a BOM and CRLF are common
# in spreadsheet exports (Excel's "CSV UTF-8").
TRICKY = '\ufeffto,note,reference\r\n+447400000017,"Hello, ""world""\nsecond line",ref-1\r\n+447400000027,plain,\r\n'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096])
async def test_records_with_quotes_commas_and_line_breaks_survive_any_chunking(size: int) -> None:
    rows = await _read(TRICKY.encode(), size)
    assert rows == [
        FileRow(1, "+447400000017", "ref-1", {"note": 'Hello, "world"\nsecond line'}),
        FileRow(2, "+447400000027", None, {"note": "plain"}),
    ]


async def test_a_multibyte_character_split_across_chunks_is_decoded_whole() -> None:
    data = "to,name\n+447400000017,Zoë Ørsted 日本\n".encode()
    for size in range(1, 8):
        assert (await _read(data, size))[0].params == {"name": "Zoë Ørsted 日本"}


async def test_a_row_with_the_wrong_number_of_cells_is_a_row_problem_not_a_file_problem() -> None:
    rows = await _read(b"to,name\n+447400000017\n+447400000027,Al,extra\n+447400000037,Bo\n", 5)
    assert [(r.row, r.problem) for r in rows] == [(1, "row_malformed"), (2, "row_malformed"), (3, None)]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "recipients"),
        (b"phone,name\n1,2\n", "recipients"),
        (b"to,name,name\n1,2,3\n", "recipients.name"),
        (b"to,name\n\xff,x\n", "recipients"),
        (b'to,name\n"unterminated,x\n', "recipients"),
    ],
)
async def test_files_that_cannot_be_read_are_refused_naming_why(data: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await _read(data, 3)
    assert refused.value.code == "recipients_invalid"
    assert refused.value.fields[0].field == field


async def test_more_rows_than_a_campaign_takes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("herald_api.campaign_files.MAX_ROWS", 3)
    data = b"to\n" + b"".join(b"+4474000000%d7\n" % i for i in range(4))
    with pytest.raises(PayloadTooLarge):
        await _read(data, 10)
    assert campaigns.MAX_ROWS == 10_000_000


async def test_parquet_columns_of_any_type_come_as_text_in_row_order() -> None:
    out = io.BytesIO()
    pq.write_table(pa.table({"to": ["+447400000017", "+447400000027", "+447400000037"], "pct": [5, 10, None],
                             "reference": ["a", None, "c"]}), out, row_group_size=2)  # fmt: skip
    rows = [row async for batch in parquet_rows(_chunks(out.getvalue(), 100)) for row in batch]
    assert rows == [
        FileRow(1, "+447400000017", "a", {"pct": "5"}),
        FileRow(2, "+447400000027", None, {"pct": "10"}),
        FileRow(3, "+447400000037", "c", {"pct": ""}),
    ]


def test_the_tricky_sample_is_what_the_csv_module_reads() -> None:
    # The sample above parsed by the standard library whole: the streaming reader must agree.
    rows = list(csv.reader(io.StringIO(TRICKY.removeprefix("\ufeff"))))
    assert rows[1][1] == 'Hello, "world"\nsecond line'
