"""Cell values as carts write them: dates, quantities, yen, 定期 intervals, e-mail member ids.

Each parser raises ``CellProblem`` with a message for the rejects file; the
caller adds the row and the column.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation


class CellProblem(ValueError):
    """A cell that cannot be read; the message is the reason shown in the rejects file."""


# 2024/05/01 10:00:00, 2024-05-01 10:00, 2024/5/1 (Excel re-saves without zero padding),
# 2024-05-01T10:00:00+09:00, Shopify's "2024-05-01 10:00:00 +0900".
_TIME = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def parse_time(text: str, shop_timezone: tzinfo) -> datetime:
    """An aware time in the shop's timezone; a naive cell is read as shop-local time."""
    found = _TIME.fullmatch(text.strip())
    if not found:
        raise CellProblem(f"not a date: {text[:40]!r} (expected YYYY/MM/DD HH:MM:SS or YYYY-MM-DD HH:MM:SS)")
    year, month, day, hour, minute, second, offset = found.groups()
    try:
        naive = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as error:
        raise CellProblem(f"not a date: {text[:40]!r} ({error})") from None
    if offset is None:
        return naive.replace(tzinfo=shop_timezone)
    return naive.replace(tzinfo=_offset(offset)).astimezone(shop_timezone)


def _offset(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_quantity(text: str) -> int:
    cleaned = text.strip().replace(",", "")
    if not cleaned.isascii() or not cleaned.isdigit():
        raise CellProblem(f"not a whole number: {text[:40]!r}")
    quantity = int(cleaned)
    if quantity <= 0:
        raise CellProblem(f"must be at least 1, not {quantity}")
    return quantity


def parse_yen(text: str) -> int:
    """A price in whole yen: "3980", "3,980", "3980.00", "¥3,980", "3980円"; empty is 0."""
    cleaned = text.strip().replace(",", "").lstrip("¥￥").removesuffix("円").strip()
    if not cleaned:
        return 0
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise CellProblem(f"not a price: {text[:40]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise CellProblem(f"not a price: {text[:40]!r}")
    return int(amount.to_integral_value())


# お届け周期 as the 定期 carts print it: "30", "30日", "1ヶ月", "2か月", "4週間".
_INTERVAL = re.compile(r"(\d{1,4})\s*(日|日ごと|日毎|ヶ月|か月|カ月|ケ月|ヵ月|箇月|ヶ月ごと|か月ごと|週|週間|週間ごと)?")
_UNIT_DAYS = {None: 1, "日": 1, "日ごと": 1, "日毎": 1, "週": 7, "週間": 7, "週間ごと": 7}


def parse_interval_days(text: str) -> int:
    found = _INTERVAL.fullmatch(text.strip())
    if not found:
        raise CellProblem(f"not a delivery interval: {text[:40]!r} (expected e.g. 30日, 1ヶ月, 4週間)")
    count, unit = int(found.group(1)), found.group(2)
    # A month of 定期 is 30 days: the carts themselves schedule "1ヶ月" as 30 days.
    return count * _UNIT_DAYS.get(unit, 30)


def email_member_id(prefix: str, email: str) -> str:
    """A stable member id from an e-mail address, without the address in clear.

    The address is personal data; a member id travels into workflow histories, search
    attributes and logs. The id is the SHA-256 of the trimmed, lower-cased address (128
    bits shown): the same customer gets the same id on every import, and any system of
    the shop can compute it the same way.
    """
    normalised = email.strip().lower()
    if "@" not in normalised or len(normalised) > 254 or any(c.isspace() for c in normalised):
        raise CellProblem(f"not an e-mail address ({len(email)} characters)")
    return prefix + hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:32]
