"""Reading a cart's CSV export: its encoding, its header and its rows, numbered as Excel numbers them.

Japanese carts write Shift_JIS (really CP932, Windows' superset with ①, ㈱, NEC
and IBM kanji: EC-CUBE's default ``SJIS-win``) or UTF-8, with a BOM when they mean
Excel to open it (Shopify, EC-CUBE set to UTF-8). Those are the only two, so the
choice is made by rule rather than by statistical detection, which can mislabel a
short Japanese file: a BOM says UTF-8; else the file is UTF-8 if it decodes as such,
else CP932 if it decodes as such; else whichever of the two leaves fewer bytes
undecodable. Undecodable bytes are kept as surrogates (``surrogateescape``), so one
bad byte costs its row (rejected with its number), never the file.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8-sig", "cp932": "cp932",
             "shift_jis": "cp932", "sjis": "cp932", "shift-jis": "cp932", "windows-31j": "cp932",
             "sjis-win": "cp932"}
# An unterminated quote makes one field of the rest of the file; stop it at a sane size.
FIELD_LIMIT = 1_000_000


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # utf-8-sig, utf-8 or cp932
    undecodable: int  # bytes that the encoding could not decode (their rows are rejected)


def decode(data: bytes, encoding: str | None = None) -> Decoded:
    """Decode a whole export; ``encoding`` (utf-8, cp932, shift_jis …) overrides the detection."""
    if encoding is not None:
        name = ENCODINGS.get(encoding.lower())
        if name is None:
            raise ValueError(f"unknown encoding {encoding!r} (use utf-8 or cp932)")
        if name == "utf-8" and data.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"
        return _lenient(data, name)
    if data.startswith(codecs.BOM_UTF8):
        return _lenient(data, "utf-8-sig")
    for name in ("utf-8", "cp932"):
        try:
            return Decoded(data.decode(name), name, 0)
        except UnicodeDecodeError:
            pass
    utf8, cp932 = _lenient(data, "utf-8"), _lenient(data, "cp932")
    return utf8 if utf8.undecodable <= cp932.undecodable else cp932


def _lenient(data: bytes, name: str) -> Decoded:
    text = data.decode(name, errors="surrogateescape")
    bad = 0
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        bad = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    return Decoded(text, name, bad)


def has_undecodable(cell: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in cell)


@dataclass(frozen=True)
class Row:
    number: int  # as Excel shows it: the header is row 1, the first data row is row 2
    cells: list[str]
    problem: str | None = None  # the row could not be read: why


def read_rows(text: str) -> tuple[list[str], Iterator[Row]]:
    """The header (names stripped) and the data rows; a row the csv module cannot parse
    comes back with its problem instead of failing the file."""
    csv.field_size_limit(FIELD_LIMIT)
    # strict: a quote never closed is an error at its row, not the rest of the file
    # silently folded into one cell.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return [], iter(())
    except csv.Error as error:
        raise ValueError(f"row 1: the header cannot be read: {error}") from None
    return [name.strip().lstrip("\ufeff") for name in header], _rows(reader)


def _rows(reader) -> Iterator[Row]:
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            why = ("a quoted cell is never closed: this row and all after it are unread"
                   if "end of data" in str(error) else f"the row cannot be read as CSV: {error}")
            yield Row(number, [], why)
            continue
        yield Row(number, cells)
