"""Which version of the shop's configuration a decision uses, deterministically.

A shop applies a configuration (``goldenroute config apply``); PostgreSQL keeps it
as an immutable, numbered version that takes effect a lead time *after* it was
applied (``effective_at``). Every worker holds every version (``VersionBook``) and
refreshes the book well within the lead time. A member's decision at workflow
time ``t`` uses the version in force at ``t``: the newest one with
``effective_at <= t``. So:

- replay is deterministic: a history's workflow tasks keep their times, and the
  versions in force then can no longer change (a new version is never effective
  in the past);
- a change costs no action per member (no signal to every workflow): each member
  picks it up at its next decision, its next wake-up or event;
- a worker whose book is not confirmed up to ``t`` (PostgreSQL unreachable for
  longer than the lead time) does not guess: the workflow task fails and Temporal
  retries it (``BookNotCurrent``).

Workers install their book per task queue (``install``); a workflow reads the book
of the queue it runs on. Nothing installed — a replayer, a test that does not
care — means the SPEC's defaults (version 0) for ever. The module is passed
through the sandbox, so the book a worker refreshes is the one its workflows read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timezone

from workflows.rules import DEFAULT_RULES, Rules

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BookNotCurrent(RuntimeError):
    """The worker cannot tell which configuration was in force at a moment: retry later."""


@dataclass(frozen=True)
class Version:
    number: int
    effective_at: datetime
    rules: Rules


@dataclass
class VersionBook:
    """Every version of one shop's rules, oldest first, and how far the worker is sure of them.

    ``known_until`` None: the book is complete for ever (a preview, a test, a replay).
    """

    versions: list[Version] = field(default_factory=lambda: [Version(0, EPOCH, DEFAULT_RULES)])
    known_until: datetime | None = None

    @classmethod
    def fixed(cls, rules: Rules) -> "VersionBook":
        """One version in force since the epoch: ``goldenroute preview --config``, tests."""
        return cls([Version(rules.version, EPOCH, rules)])

    def replace(self, versions: list[Version], known_until: datetime | None) -> None:
        """Take a refreshed list (any order); a worker calls this from its refresh loop."""
        ordered = sorted(versions, key=lambda v: (v.effective_at, v.number))
        if not ordered or ordered[0].effective_at > EPOCH:
            ordered.insert(0, Version(0, EPOCH, DEFAULT_RULES))
        self.versions = ordered
        self.known_until = known_until

    def at(self, moment: datetime) -> Version:
        """The version in force at ``moment``."""
        if self.known_until is not None and moment > self.known_until:
            raise BookNotCurrent(
                f"shop configuration confirmed only until {self.known_until.isoformat()}, "
                f"a decision at {moment.isoformat()} waits for the next refresh")
        index = bisect.bisect_right([v.effective_at for v in self.versions], moment) - 1
        return self.versions[max(index, 0)]

    def get(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)

    def first_after(self, number: int) -> Version | None:
        """The version that took over from ``number`` (whose start bounds what is retroactive)."""
        current = self.get(number)
        if current is None:
            return None
        later = [v for v in self.versions if v.effective_at > current.effective_at]
        return later[0] if later else None


@dataclass(frozen=True)
class Choice:
    """The rules of a decision and, at a member's first decision under a newer version
    (a transition), the rules it decided under before and since when they no longer hold."""

    rules: Rules
    previous: tuple[Rules, datetime] | None = None


def choose(book: VersionBook, now: datetime, last: int | None, carried: bool, before: Rules) -> Choice:
    """The version in force at ``now`` for a member whose last decision was under ``last``.

    ``carried``: the member has decided before (its state came through continue-as-new)
    even if ``last`` is None — it ran before versions existed, under ``before``.
    """
    current = book.at(now)
    if current.number == last or (last is None and not carried):
        return Choice(current.rules)
    previous = book.get(last) if last is not None else None
    after = book.first_after(last) if last is not None else None
    rules_before = previous.rules if previous is not None else before
    return Choice(current.rules, (rules_before, after.effective_at if after is not None else now))


_BOOKS: dict[str, VersionBook] = {}
_DEFAULT = VersionBook()


def install(task_queue: str, book: VersionBook) -> None:
    """A worker's book for the workflows of its task queue."""
    _BOOKS[task_queue] = book


def uninstall(task_queue: str) -> None:
    _BOOKS.pop(task_queue, None)


ANY_QUEUE = "*"  # a book for every queue without its own: a Replayer runs under a queue of its own


def book_for(task_queue: str) -> VersionBook:
    return _BOOKS.get(task_queue) or _BOOKS.get(ANY_QUEUE) or _DEFAULT
