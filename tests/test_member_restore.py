"""``goldenroute member restore``: which runs it starts again, and which it refuses.

No worker serves the member workflow here: the tests look only at what is started,
with which input, and what the operator is told. They use the dev server: a member
left with an outstanding task would stop the time-skipping clock for the tests after it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.projection import write_events
from starter.cli import main
from starter.restore import Restart, restore_member
from tests.factories import jst, order
from worker.converter import decompress
from workflows.lifecycle import new_member
from workflows.member import workflow_id
from workflows.projection import LoggedEvent, ProjectionRequest, snapshot


@workflow.defn(name="ErasedMember")
class ErasedMember:
    """Stands in for a member workflow that completed, which it does only once the member is erased."""

    @workflow.run
    async def run(self) -> None:
        return None


@pytest.fixture
async def logged_member(pool, member_id) -> str:
    event = order(member_id, jst(2026, 4, 1), "o1")
    await write_events(pool, ProjectionRequest(
        member_id=member_id, version=1, snapshot=snapshot(new_member(member_id), None),
        events=(LoggedEvent(seq=1, event=event),),
    ))
    return member_id


async def test_a_terminated_member_is_started_again_with_restore(dev_server_env, pool, logged_member, task_queue):
    client = dev_server_env.client
    first = await restore_member(client, pool, logged_member, task_queue)
    assert (first.outcome, first.logged.events, first.logged.touches) == (Restart.STARTED, 1, 0)
    handle = client.get_workflow_handle(workflow_id(logged_member))
    assert await _started_with_restore(handle)

    again = await restore_member(client, pool, logged_member, task_queue)
    assert (again.outcome, again.run_id, again.refused) == (Restart.ALREADY_RUNNING, first.run_id, False)

    await handle.terminate("lost")
    after = await restore_member(client, pool, logged_member, task_queue)
    assert after.outcome is Restart.STARTED and after.run_id != first.run_id
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    await handle.terminate("test over")


async def test_an_erased_member_is_never_started_again(dev_server_env: WorkflowEnvironment, pool,
                                                       logged_member, task_queue):
    client = dev_server_env.client
    async with Worker(client, task_queue=task_queue, workflows=[ErasedMember],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        await client.execute_workflow(ErasedMember.run, id=workflow_id(logged_member), task_queue=task_queue,
                                      execution_timeout=timedelta(minutes=1))
    refused = await restore_member(client, pool, logged_member, task_queue)
    assert (refused.outcome, refused.refused) == (Restart.ERASED, True)


async def test_a_member_with_nothing_logged_is_not_started(dev_server_env, pool, member_id, task_queue):
    refused = await restore_member(dev_server_env.client, pool, member_id, task_queue)
    assert (refused.outcome, refused.refused) == (Restart.NOTHING_LOGGED, True)
    with pytest.raises(RPCError):
        await dev_server_env.client.get_workflow_handle(workflow_id(member_id)).describe()


def test_the_cli_prints_what_postgresql_holds_and_refuses_an_unknown_member(
        dev_server_env, database_url, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_server_env.client.namespace)
    unknown = f"m-{uuid.uuid4().hex[:10]}"

    code = main(["member", "restore", unknown])

    out, err = capsys.readouterr()
    assert code == 1
    assert f"member {unknown}: PostgreSQL holds 0 events and 0 decided touches" in out
    assert "nothing to restore" in err


async def _started_with_restore(handle) -> bool:
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payload = decompress(event.workflow_execution_started_event_attributes.input.payloads[0])
            return b'"restore":true' in payload.data
    return False
