"""``goldenroute member restore``: start a failed or terminated member again from its event log.

The new run carries ``restore=True``: before anything else it loads the member's
logged events and decided touches from PostgreSQL (``load_member_log``), so it
resumes where the lost run was rather than from an empty member.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.restore import Logged, count_logged
from workflows.member import BORN_WITH, MemberWorkflow, workflow_id
from workflows.messages import MemberInput


class Restart(StrEnum):
    STARTED = "started"
    ALREADY_RUNNING = "already_running"  # nothing to do: the member is alive
    ERASED = "erased"  # the last run completed, which a member does only when erased
    NOTHING_LOGGED = "nothing_logged"  # no events, no touches: most likely a mistyped id


@dataclass(frozen=True)
class Restored:
    member_id: str
    logged: Logged
    outcome: Restart
    run_id: str | None = None

    @property
    def refused(self) -> bool:
        return self.outcome in (Restart.ERASED, Restart.NOTHING_LOGGED)


async def restore_member(client: Client, pool: asyncpg.Pool, member_id: str, task_queue: str) -> Restored:
    logged = await count_logged(pool, member_id)
    handle = client.get_workflow_handle(workflow_id(member_id))
    found = await _latest_run(handle)
    if found is not None:
        return Restored(member_id, logged, found[0], found[1])
    if not (logged.events or logged.touches):
        return Restored(member_id, logged, Restart.NOTHING_LOGGED)
    try:
        started = await client.start_workflow(
            MemberWorkflow.run,
            MemberInput(member_id=member_id, restore=True, born_with=BORN_WITH),
            id=workflow_id(member_id),
            task_queue=task_queue,
            # The same policy as the ingress: an erased member's completed run is never started again.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError as error:  # the ingress (or another operator) got there first
        found = await _latest_run(handle)
        outcome, run_id = found if found is not None else (Restart.ALREADY_RUNNING, error.run_id)
        return Restored(member_id, logged, outcome, run_id)
    return Restored(member_id, logged, Restart.STARTED, started.result_run_id)


async def _latest_run(handle: WorkflowHandle) -> tuple[Restart, str] | None:
    """What stops a restore: an open run, or a completed (erased) one. None: a start may go ahead."""
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:  # never started, or its history is past retention
            return None
        raise
    if description.status is WorkflowExecutionStatus.RUNNING:
        return Restart.ALREADY_RUNNING, description.run_id
    if description.status is WorkflowExecutionStatus.COMPLETED:
        return Restart.ERASED, description.run_id
    return None  # failed, terminated, cancelled or timed out
