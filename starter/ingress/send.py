"""``goldenroute send``: a file of events through the one ingress path, and a truthful account of it.

Parse every line, commit the valid events to the event log (``accept``: from then on
they are never lost), then forward what waits in the log for those members. When
Temporal cannot be reached the events stay stored, and the running engine (or the
next ``send``) forwards them: that is no failure of ``send``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from temporalio.client import Client

from starter.ingress.forwarder import Forwarder, ForwardResult
from starter.progress import progress_bar
from starter.ingress.log import ACCEPTED, DUPLICATE, ERASED, REJECTED, Verdict, accept
from starter.ingress.parse import Parsed, parse_lines
from starter.ingress.shift import Shift, shift_to_now
from worker.client import connect
from worker.main import database
from worker.settings import Settings

CONNECT_TIMEOUT = 10.0
_UNFORWARDED = "SELECT event_id FROM member_events WHERE forwarded_at IS NULL AND member_id = ANY($1::text[])"
# What became of the events this send is about (accepted now, or stored earlier and not yet
# forwarded), once its own forwarding is done: ``$2`` the ones it marked itself.
_AFTERWARDS = """
SELECT count(*) FILTER (WHERE forwarded_at IS NULL) AS pending,
       count(*) FILTER (WHERE forwarded_at IS NULL AND lease_until > now()) AS held,
       count(*) FILTER (WHERE forwarded_at IS NOT NULL AND forward_error IS NULL
                          AND NOT event_id = ANY($2::text[])) AS elsewhere,
       count(*) FILTER (WHERE forwarded_at IS NOT NULL AND forward_error IS NOT NULL
                          AND NOT event_id = ANY($2::text[])) AS refused_elsewhere
FROM member_events WHERE event_id = ANY($1::text[])
"""


@dataclass
class Sent:
    parsed: Parsed
    verdicts: list[Verdict] = field(default_factory=list)
    forwarded: ForwardResult | None = None  # None: Temporal was not reached
    unreachable: str | None = None  # why not
    pending: int = 0  # events of these members stored but not yet forwarded
    # Another forwarder (the running engine's ingress, or another send) at the same members meanwhile:
    elsewhere: int = 0  # events it forwarded while this send forwarded the rest
    refused_elsewhere: int = 0  # events it found it cannot forward (its log says why)
    held: int = 0  # of ``pending``, events it holds a lease on: it is signalling them now
    shift: Shift | None = None  # --now: how the timeline was moved
    now: datetime | None = None  # --now: the moment it was moved to

    def of(self, status: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == status]

    @property
    def exit_status(self) -> int:
        """1 when anything was rejected or refused: the sender has something to fix or know."""
        refused = self.forwarded.refused if self.forwarded else []
        return 1 if self.parsed.rejected or self.of(REJECTED) or refused else 0


async def send(settings: Settings, data: bytes, now: datetime | None = None) -> Sent:
    """``now`` (aware): first shift the timeline so the last event is 15 minutes before it (``--now``)."""
    sent = Sent(parse_lines(data))
    if now is not None:
        sent.parsed, sent.shift = shift_to_now(sent.parsed, now)
        sent.now = now
    if not sent.parsed.numbered:
        return sent
    try:
        async with database(settings) as pool:
            # Connected before accepting, so this send forwards what it accepted at once, before
            # the running engine's forwarder comes round to it.
            client = await _connect(settings, sent)
            sent.verdicts = await accept(pool, sent.parsed.numbered, source="cli")
            members = sorted({v.member_id for v in sent.verdicts if v.status != REJECTED and v.member_id})
            if members:
                # This send's events: the ones it accepted, and its members' older ones still to go.
                ours = {v.event_id for v in sent.of(ACCEPTED)} | {
                    r["event_id"] for r in await pool.fetch(_UNFORWARDED, members)}
            if members and client is not None:
                with progress_bar("forwarding", "members", len(members)) as bar:
                    sent.forwarded = await Forwarder(pool, client, settings.task_queue).forward_pending(
                        members, progress=bar.update, track=True)
            if members:
                marked = sent.forwarded.handled if sent.forwarded and sent.forwarded.handled else set()
                after = await pool.fetchrow(_AFTERWARDS, sorted(ours), sorted(marked))
                sent.pending, sent.held = after["pending"], after["held"]
                sent.elsewhere, sent.refused_elsewhere = after["elsewhere"], after["refused_elsewhere"]
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # accept is one transaction: before it returned, nothing of the input was stored.
        stored = "the accepted events are stored" if sent.verdicts else "nothing was stored"
        raise RuntimeError(f"PostgreSQL: {error}; {stored}") from None
    return sent


async def _connect(settings: Settings, sent: Sent) -> Client | None:
    """The Temporal client, or None (and why, in ``sent``): the events are stored all the same."""
    try:
        return await asyncio.wait_for(connect(settings), CONNECT_TIMEOUT)
    except (RuntimeError, OSError, asyncio.TimeoutError):
        sent.unreachable = (f"Temporal at {settings.temporal_address} is not reachable"
                            if settings.temporal_address else "TEMPORAL_ADDRESS is not set and no dev stack is running")
        return None


def details(sent: Sent) -> list[str]:
    """One line per event not taken: what the sender must fix (rejected) or know (refused)."""
    unit = sent.parsed.unit
    lines = [f"rejected {r}" for r in sent.parsed.rejected]
    lines += [f"refused {unit} {v.number}: {'; '.join(v.problems)}" for v in sent.of(REJECTED)]
    if sent.forwarded:
        lines += [f"not forwarded: {why}" for why in sent.forwarded.refused]
    return lines


def summary(sent: Sent) -> list[str]:
    """What happened, counted apart: accepted, duplicate, rejected, refused; then forwarding."""
    unit = sent.parsed.unit
    accepted = sent.of(ACCEPTED)
    parts = [f"accepted {_count(len(accepted), 'event')}"
             + (f" for {_count(len({v.member_id for v in accepted}), 'member')}" if accepted else "")]
    if duplicates := sent.of(DUPLICATE):
        parts.append(f"{_count(len(duplicates), 'duplicate')} (already accepted, not stored again)")
    if rejected := sent.parsed.rejected:
        where = _numbers(unit, [r.line for r in rejected])
        parts.append(f"rejected {_count(len(rejected), f'invalid {unit}')} ({where})")
    if refused := sent.of(REJECTED):
        where = _numbers(unit, [v.number for v in refused])
        only_erased = all(v.problems == (ERASED,) for v in refused)
        whose = f" of {_count(len({v.member_id for v in refused}), 'erased member')}" if only_erased else ""
        parts.append(f"refused {_count(len(refused), 'event')}{whose} ({where})")
    if not sent.parsed.numbered and not sent.parsed.rejected:
        parts.append("the input holds no events")
    shifted = [sent.shift.describe(sent.now)] if sent.shift and sent.now else []
    return [*shifted, "; ".join(parts), *_forwarding(sent)]


OTHER = "another forwarder (the running engine's, or another send's)"


def _forwarding(sent: Sent) -> list[str]:
    """Forwarded here, forwarded meanwhile by another forwarder, refused, waiting: they add up to
    the events this send is about (accepted now, or stored earlier and not yet forwarded)."""
    here = sent.forwarded.forwarded if sent.forwarded else 0
    named = []  # another forwarder is introduced once, then "it"

    def other() -> str:
        said = bool(named)
        named.append(True)
        return "that forwarder" if said else OTHER

    lines = []
    if sent.unreachable:
        if sent.pending:
            lines.append(f"{sent.unreachable}: {_count(sent.pending, 'event')} stored in PostgreSQL and forwarded "
                         f"when the engine runs (`goldenroute dev` or `goldenroute serve`, or the next `send`)")
        if sent.elsewhere:
            lines.append(f"{_count(sent.elsewhere, 'event')} forwarded meanwhile by {other()}")
    elif sent.elsewhere:
        lines.append(f"forwarded {_count(here, 'event')} to the member workflows here, "
                     f"{sent.elsewhere} by {other()} meanwhile")
    elif here:
        lines.append(f"forwarded {_count(here, 'event')} to the member workflows")
    if sent.forwarded and sent.forwarded.refused:
        lines.append(f"{_count(len(sent.forwarded.refused), 'event')} cannot be forwarded (listed above)")
    if sent.refused_elsewhere:
        lines.append(f"{_count(sent.refused_elsewhere, 'event')} cannot be forwarded, as {other()} found "
                     "(its log says why)")
    if sent.pending and not sent.unreachable:
        busy = sent.forwarded.busy if sent.forwarded else 0
        lines.append(_waiting(sent, other if named or sent.held or busy else None))
    return lines


def _waiting(sent: Sent, other: Callable[[], str] | None) -> str:
    """The events still in the log: whether another forwarder is at them, or they wait for the engine."""
    waiting = f"not yet forwarded: {_count(sent.pending, 'event')}"
    if other is None:
        return (f"{waiting} stored in PostgreSQL and forwarded when the engine runs "
                f"(`goldenroute dev` or `goldenroute serve`, or the next `send`)")
    if sent.held == sent.pending:
        return f"{waiting}: {other()} is signalling {'it' if sent.pending == 1 else 'them'} now"
    held = f"{other()} is signalling {sent.held} of them now, " if sent.held else ""
    return (f"{waiting} stored in PostgreSQL: {held}the running engine's forwarder takes "
            f"{'the rest' if sent.held else 'them'} up on its next round (or the next `send` does)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _numbers(unit: str, numbers: list[int], shown: int = 5) -> str:
    """``line 2``, ``lines 2 and 5``, ``lines 2, 5, 7, 9, 11 and 3 more``."""
    if len(numbers) == 1:
        return f"{unit} {numbers[0]}"
    if len(numbers) <= shown:
        return f"{unit}s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
    return f"{unit}s {', '.join(map(str, numbers[:shown]))} and {len(numbers) - shown} more"
