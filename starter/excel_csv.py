"""CSV that Japanese Excel opens as it is meant: UTF-8 with a BOM, or CP932.

Without a BOM, Excel reads a CSV as CP932 and garbles UTF-8 Japanese; some receivers'
systems (a print house's mail merge, a warehouse's packing software) read CP932 only,
which lacks some characters. Those with a CP932 form of the same meaning are written
in it (¥ → ￥, — → ―, a no-break space → a space; zero-width marks are dropped); any
other becomes 〓 (ゲタ, the printer's mark for a missing glyph) and is counted, so
someone looks at those rows: a file is never refused for one character.

A cell beginning with ``=``, ``+``, ``-`` or ``@`` would be read by Excel as a formula
(CSV injection): such a cell gets a leading apostrophe, which Excel shows as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from starter.ingress.carts.csvfile import ENCODINGS  # the names the cart import accepts

PLACEHOLDER = "〓"
DEFAULT_ENCODING = "utf-8-sig"
# Same meaning, a character CP932 has.
CP932_FORMS: dict[int, str | None] = {
    **{ord(c): f for c, f in {"¥": "￥", "—": "―", "–": "－", "¦": "￤", "•": "・", "·": "・", "≤": "≦",
                              "≥": "≧", "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " "}.items()},
    **{ord(c): None for c in "\u200b\u200c\u200d\u2060\ufe0e\ufe0f\ufeff"},  # invisible
}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def encoding_name(text: str) -> str:
    """utf-8-sig, utf-8 or cp932, from any name the cart import knows (sjis, shift_jis, windows-31j …)."""
    name = ENCODINGS.get(text.lower())
    if name is None:
        raise ValueError(f"unknown encoding {text!r} (use utf-8-sig or cp932)")
    return name


@dataclass(frozen=True)
class CsvFile:
    data: bytes
    encoding: str
    missing: Counter[str] = field(default_factory=Counter)  # characters written as 〓, by character
    forms: int = 0  # characters written as their CP932 form

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def replaced(self) -> int:
        return sum(self.missing.values())


def csv_file(headers: Sequence[str], rows: Iterable[Sequence[str]], encoding: str = DEFAULT_ENCODING) -> CsvFile:
    """The header and the rows, every cell text, CRLF line ends, quoted where the csv module must."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows([_cell(cell) for cell in row] for row in rows)
    return encode(buffer.getvalue(), encoding)


def encode(text: str, encoding: str) -> CsvFile:
    if encoding != "cp932":
        return CsvFile(text.encode(encoding), encoding)
    forms = sum(1 for c in text if ord(c) in CP932_FORMS)
    text = text.translate(CP932_FORMS)
    lacking = {c for c in set(text) if not _in_cp932(c)}
    missing = Counter(c for c in text if c in lacking) if lacking else Counter()
    text = text.translate({ord(c): PLACEHOLDER for c in lacking})
    return CsvFile(text.encode("cp932"), encoding, missing, forms)


def _in_cp932(char: str) -> bool:
    try:
        char.encode("cp932")
    except UnicodeEncodeError:
        return False
    return True


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def describe_missing(missing: Counter[str], shown: int = 5) -> str:
    """``𠮷 U+20BB7 ×2, U+200E ×1``: the characters CP932 lacks, by code point (and as themselves
    when they can be seen), so an operator can find them in the receiver's own tools."""
    def name(char: str) -> str:
        visible = unicodedata.category(char)[0] in "LNPS"
        return f"{char} U+{ord(char):04X}" if visible else f"U+{ord(char):04X}"
    parts = [f"{name(c)} ×{n}" for c, n in missing.most_common(shown)]
    more = len(missing) - shown
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


# 〒100-0001, 〒１００－０００１, 100-0001 or 1000001 at the start of the address block.
_POSTCODE = re.compile(r"^\s*〒?\s*([0-9０-９]{3})\s*[-－ー‐−‑]?\s*([0-9０-９]{4})(?![0-9０-９])[\s　]*")
_HONORIFIC = re.compile(r"[\s　]*(様|殿|御中)$")


def address_block(block: str) -> tuple[str, str, str]:
    """(postcode, address, name) of a postal address as the member gave it, one string.

    The postcode when the block starts with one (``〒100-0001``, written ``100-0001``);
    the name when the block's last line ends in 様 / 殿 / 御中 (written without it): a
    one-line block cannot say where the address ends and a name begins, so its name is
    left empty rather than guessed. The address keeps the block's own line breaks."""
    postcode = ""
    match = _POSTCODE.match(block)
    if match:
        digits = unicodedata.normalize("NFKC", match.group(1) + match.group(2))
        postcode = f"{digits[:3]}-{digits[3:]}"
        block = block[match.end():]
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    name = ""
    if len(lines) >= 2 and _HONORIFIC.search(lines[-1]):
        name = _HONORIFIC.sub("", lines.pop())
    return postcode, "\n".join(lines), name
