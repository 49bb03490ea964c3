"""Parse a submission of events (NDJSON, one JSON object or a JSON array) into numbered events.

A submission comes from outside as bytes, and any one line of it may be broken:
not UTF-8, not JSON, nested too deeply for a parser, megabytes long, or an event
that breaks the contract. Each such line is rejected with its number and the
field or reason, and never stops the others. The contract itself is
``workflows.events.parse_event``, the one validator of every ingress.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from workflows.events import InvalidEvent, MemberEvent, parse_event

# One event is a few hundred bytes; a line this long is no event, and parsing it would
# only cost memory and time.
MAX_EVENT_BYTES = 1 << 20
NESTED_TOO_DEEPLY = "(event): invalid JSON: nested too deeply"


@dataclass(frozen=True)
class Rejected:
    line: int  # 1-based: the line, or the item of a JSON array
    problems: list[str]
    unit: str = "line"  # or "item"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: " + "; ".join(self.problems)


@dataclass(frozen=True)
class Parsed:
    numbered: list[tuple[int, MemberEvent]]  # each valid event with its line (or item) number
    rejected: list[Rejected]
    unit: str = "line"

    @property
    def events(self) -> list[MemberEvent]:
        return [event for _, event in self.numbered]


def parse_lines(data: bytes | str) -> Parsed:
    """Validate NDJSON (one event a line), one JSON object, or a JSON array (item N = number N).

    The whole input is taken as one JSON value only when it parses as one; anything
    else, e.g. NDJSON whose first line is ``[1, 2]``, is read line by line.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    raw = raw.removeprefix(codecs.BOM_UTF8)
    whole = _whole_value(raw)
    if isinstance(whole, list):
        return _parse_items(whole)
    if isinstance(whole, dict):
        return _collect([(1, _event_or_problems(raw))], "line")
    return _collect([(number, _line_event(line)) for number, line in enumerate(raw.split(b"\n"), start=1)
                     if line.strip()], "line")


def _whole_value(raw: bytes) -> object:
    """The input as one JSON array or object, or None when it is not one (NDJSON, or broken)."""
    if raw.lstrip()[:1] not in (b"[", b"{"):
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _parse_items(items: list) -> Parsed:
    numbered = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            numbered.append((number, [f"(event): must be a JSON object, not {_json_kind(item)}"]))
            continue
        try:
            text = json.dumps(item, ensure_ascii=False)
        except RecursionError:
            numbered.append((number, [NESTED_TOO_DEEPLY]))
            continue
        numbered.append((number, _event_or_problems(text.encode("utf-8", "surrogatepass"))))
    return _collect(numbered, "item")


def _line_event(line: bytes) -> MemberEvent | list[str]:
    line = line.removesuffix(b"\r")
    if len(line) > MAX_EVENT_BYTES:
        return [f"(line): {len(line):,} bytes, over the limit of {MAX_EVENT_BYTES:,} bytes for one event"]
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        return [f"(line): not UTF-8 at byte {error.start + 1}"]
    return _event_or_problems(line)


def _event_or_problems(text: bytes) -> MemberEvent | list[str]:
    if len(text) > MAX_EVENT_BYTES:
        return [f"(event): {len(text):,} bytes, over the limit of {MAX_EVENT_BYTES:,} bytes for one event"]
    try:
        return parse_event(text)
    except InvalidEvent as error:
        return error.problems
    except RecursionError:
        return [NESTED_TOO_DEEPLY]


def _collect(numbered: list[tuple[int, MemberEvent | list[str]]], unit: str) -> Parsed:
    events = [(n, e) for n, e in numbered if not isinstance(e, list)]
    rejected = [Rejected(n, e, unit) for n, e in numbered if isinstance(e, list)]
    return Parsed(events, rejected, unit)


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
