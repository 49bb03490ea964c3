"""What a preview runs: one member's events per file, validated as the ingress validates them.

Several files (or a directory of ``*.ndjson``) are several example members, one
file each; a file's events are checked on their own and reported by file and line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from activities.contacts import changes_of, reachable
from starter.ingress import parse_lines
from workflows.events import MemberEvent, MemberRegistered

DEFAULT_TIMEZONE = "Asia/Tokyo"
STDIN = "-"


class PreviewError(ValueError):
    """The input cannot be previewed; ``problems`` says why, line by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ExampleMember:
    """One file's member: where it came from (for messages) and its validated events."""

    source: str
    events: list[MemberEvent]


def load_member_events(text: str) -> list[MemberEvent]:
    """Validate a file of one member's events (NDJSON, one object or an array), as the ingress does."""
    parsed = parse_lines(text)
    if parsed.rejected:
        raise PreviewError([f"line {r.line}: {p}" for r in parsed.rejected for p in r.problems])
    if not parsed.events:
        raise PreviewError(["no events: the file is empty"])
    numbers = _line_numbers(text, len(parsed.events))
    first = parsed.events[0].member_id
    others = [(n, e.member_id) for n, e in zip(numbers, parsed.events) if e.member_id != first]
    if others:
        raise PreviewError([
            f"line {n}: member_id: {member!r} is not {first!r} (line {numbers[0]}); "
            f"preview takes one member per file" for n, member in others
        ])
    return parsed.events


def event_files(names: list[str]) -> list[str]:
    """The files named, a directory standing for its ``*.ndjson`` (sorted); ``-`` is standard input."""
    files: list[str] = []
    for name in names:
        path = Path(name)
        if name != STDIN and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.ndjson"))
            if not found:
                raise PreviewError([f"{name}: a directory without any *.ndjson file"])
            files.extend(found)
        else:
            files.append(name)
    return files


def load_members(names: list[str]) -> list[ExampleMember]:
    """Every file's member, validated; every problem of every file named at once, and nothing runs.

    A member in two files is refused: which file's events would be its?"""
    members: list[ExampleMember] = []
    problems: list[str] = []
    files = event_files(names)
    several = len(files) > 1
    seen: dict[str, str] = {}
    for name in files:
        text = sys.stdin.read() if name == STDIN else Path(name).read_text(encoding="utf-8")
        try:
            events = load_member_events(text)
        except PreviewError as error:
            problems.extend(f"{name} {p}" if several else p for p in error.problems)
            continue
        member_id = events[0].member_id
        if member_id in seen:
            problems.append(f"{name}: member_id: {member_id!r} is also the member of {seen[member_id]}; "
                            "one file per member")
            continue
        seen[member_id] = name
        members.append(ExampleMember(source=name, events=events))
    if problems:
        raise PreviewError(problems)
    return members


def _line_numbers(text: str, count: int) -> list[int]:
    """The line (or array item) of each valid event, numbered as ``parse_lines`` numbers them."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return list(range(1, count + 1))
    numbered = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return numbered if len(numbered) == count else [1] * count


def strip_contacts(events: list[MemberEvent]) -> list[MemberEvent]:
    """Replace each registration's contact by the channels it makes reachable, as the ingress does.

    Without a database: the contact fields known as of each registration decide which
    channels can reach the member — what the ingress reports when the registrations
    arrive in time order. A registration updates them partially (a field left out keeps
    its value, ``null`` or ``""`` removes the address), last writer wins per field on
    ``(occurred_at, event_id)`` as in ``member_contacts``, so neither the file's order
    (ties on ``occurred_at`` included) nor a registration listed twice changes the
    result. One without contact keeps ``reachable`` unset, as the ingress does. The
    events keep their order.
    """
    with_contact = {(e.occurred_at, e.event_id): e for e in events
                    if isinstance(e, MemberRegistered) and e.contact is not None}
    known: dict[str, str | None] = {}
    reachable_as_of: dict[tuple, frozenset] = {}
    for stamp in sorted(with_contact):  # oldest first: a plain update is last writer wins
        known.update(changes_of(with_contact[stamp].contact))
        reachable_as_of[stamp] = reachable(known)
    return [
        event.model_copy(update={
            "contact": None,
            "reachable": reachable_as_of[(event.occurred_at, event.event_id)] if event.contact is not None else None})
        if isinstance(event, MemberRegistered) else event
        for event in events
    ]


def member_timezone(events: list[MemberEvent]) -> str:
    """The member's timezone: that of its latest registration naming one (the profile is last-writer-wins)."""
    named = [e for e in events if isinstance(e, MemberRegistered) and e.timezone is not None]
    if not named:
        return DEFAULT_TIMEZONE
    return max(named, key=lambda e: (e.occurred_at, e.event_id)).timezone


def in_time_order(events: list[MemberEvent]) -> list[MemberEvent]:
    return sorted(events, key=lambda e: e.occurred_at)  # stable: ties keep file order
