"""The ingress: validate order-system events, keep contacts out of workflows, forward by signal-with-start.

Every path into the engine (CLI, HTTP, CSV import) goes through here, so there
is one event schema and one place where personal data is taken off an event.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.contacts import store_registrations
from starter.ingress.parse import Parsed, Rejected, parse_lines  # noqa: F401  (re-exported)
from workflows import lifecycle, search
from workflows.events import MemberErased, MemberEvent, MemberRegistered
from workflows.member import BORN_WITH, MemberWorkflow, workflow_id
from workflows.messages import MemberInput

# How many members are signalled at once; one member's events go in order.
CONCURRENCY = 32


async def strip_contacts(conn: asyncpg.Pool | asyncpg.Connection, events: list[MemberEvent]) -> list[MemberEvent]:
    """Store the registrations' contact changes in PostgreSQL and take the contact off every event.

    A registration updates the contact partially (SPEC §2), last writer wins per field on
    ``(occurred_at, event_id)``: a field changes only if the registration is newer than
    the one that last set it (an explicit None removes the address, and an older
    registration delivered again or late cannot bring it back), so the stored contact
    is the same for any delivery order. All the batch's changes go in one statement. A
    registration that carried a contact gets ``reachable``, the channels the stored
    contact reaches after the update — also one older than a registration already
    applied: the row it reports is the final one. One without contact keeps
    ``reachable=None`` (unchanged). Nothing is stored for an erased member, or one
    erased in this batch: its events are refused anyway, and its personal data must
    not come back (those registrations keep ``None`` too).
    """
    if not any(isinstance(e, MemberRegistered) for e in events):
        return events
    erasing = {e.member_id for e in events if isinstance(e, MemberErased)}
    reached = await store_registrations(conn, [
        e for e in events
        if isinstance(e, MemberRegistered) and e.contact is not None and e.member_id not in erasing])
    # `reachable` and `reach` are the ingress's word only: what an order system sent along is dropped.
    return [_stripped(e, reached.get(e.member_id) if e.contact is not None else None)
            if isinstance(e, MemberRegistered) else e for e in events]


def _stripped(event: MemberRegistered, reach: dict | None) -> MemberRegistered:
    if reach is None:
        return event.model_copy(update={"contact": None, "reachable": None, "reach": None})
    reachable = frozenset(channel for channel, known in reach.items() if known.reachable)
    return event.model_copy(update={"contact": None, "reachable": reachable, "reach": reach})


@dataclass(frozen=True)
class Forwarded:
    signalled: int
    members: int
    refused: list[str]  # "member: why", e.g. an erased member


async def forward(client: Client, events: list[MemberEvent], task_queue: str) -> Forwarded:
    """Signal-with-start each event to its member's workflow: one signal per event."""
    if any(isinstance(e, MemberRegistered) and e.contact is not None for e in events):
        raise ValueError("contact data must be stripped before events reach a workflow")
    by_member: dict[str, list[MemberEvent]] = defaultdict(list)
    for event in events:
        by_member[event.member_id].append(event)
    gate = asyncio.Semaphore(CONCURRENCY)
    refused: list[str] = []
    signalled = 0

    async def send_member(member_id: str, member_events: list[MemberEvent]) -> None:
        nonlocal signalled
        async with gate:
            for event in member_events:
                try:
                    await signal_with_start(client, event, task_queue)
                    signalled += 1
                except WorkflowAlreadyStartedError:
                    refused.append(f"{member_id}: member was erased; event {event.event_id} dropped")
                    return

    await asyncio.gather(*(send_member(m, evs) for m, evs in by_member.items()))
    return Forwarded(signalled=signalled, members=len(by_member), refused=refused)


async def signal_with_start(client: Client, event: MemberEvent, task_queue: str,
                            rpc_timeout: timedelta | None = None, restore: bool = True) -> None:
    """``restore=False`` only for a member PostgreSQL holds nothing earlier of (the forwarder
    knows: ``event`` is the member's first logged event and no touch is recorded): its run
    then starts without the restore activity, an activity and a workflow task less, and
    with the search attributes its first event gives it: its first task then changes none
    (an upsert, or a continue-as-new, less). A run that is already open ignores them."""
    await client.start_workflow(
        MemberWorkflow.run,
        # A fresh run (a new member, or one whose run failed or was terminated) first
        # reloads what PostgreSQL holds of the member, so it never restarts empty.
        MemberInput(member_id=event.member_id, restore=restore, born_with=BORN_WITH),
        id=workflow_id(event.member_id),
        task_queue=task_queue,
        start_signal="event",
        start_signal_args=[event],
        # An erased member's workflow completed: never start it again. A failed or
        # terminated one may be started afresh.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        rpc_timeout=rpc_timeout,
        search_attributes=None if restore else search.typed(search.values_of(
            lifecycle.apply(lifecycle.advance_clock(lifecycle.new_member(event.member_id), event.occurred_at),
                            event))),
    )
