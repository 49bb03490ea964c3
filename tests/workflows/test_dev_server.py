"""MemberWorkflow on the Temporal dev server: signal-with-start, search attributes, continue-as-new, erasure."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.contacts import store_contacts
from starter.ingress import forward, strip_contacts
from bench.cost import all_runs
from tests.factories import days, event, order, registered
from tests.workflows.helpers import eventually, running_worker, send, state_of
from worker.converter import decode_history
from workflows.events import parse_event
from workflows.lifecycle import Stage
from workflows.search import LIFECYCLE_STAGE, NEXT_TOUCH_AT, PURCHASE_COUNT, SUBSCRIPTION_STATUS


@pytest.fixture
async def env(dev_server_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return dev_server_env


def now() -> datetime:
    return datetime.now(timezone.utc)


async def history_events(handle, event_type) -> list:
    history = await handle.fetch_history()
    return [e for e in history.events if e.event_type == event_type]


async def attribute_upserts(handle) -> int:
    """Upserts of the member's search attributes in the current run (not the SDK's own
    TemporalChangeVersion, which records a patch)."""
    upserts = await history_events(handle, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
    return len([e for e in upserts if set(e.upsert_workflow_search_attributes_event_attributes
                                          .search_attributes.indexed_fields) - {"TemporalChangeVersion"}])


async def last_signal_processed(handle) -> None:
    """The workflow's current run has completed a task after its newest signal, if it has one
    (a run it continued as new to may have none yet)."""
    completed = await history_events(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    signals = await history_events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    assert completed and (not signals or signals[-1].event_id < completed[-1].event_id)




async def test_signal_with_start_creates_the_workflow_once_and_then_signals_it(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        t0 = now()
        handle = await send(env.client, task_queue, registered(member_id, t0))
        first_run = (await handle.describe()).run_id
        await send(env.client, task_queue, order(member_id, t0, "o1"), order(member_id, t0 + days(0.001), "o2"))

        async def both_orders_folded():
            view = await state_of(handle)
            assert view.purchase_count == 2 and view.stage is Stage.F2
        await eventually(both_orders_folded)
        # One workflow: its first run, then only runs it continued as new to (a new stage is
        # published by continuing as new), none started again by a signal-with-start.
        runs = await all_runs(env.client, handle.id)
        assert runs[0].run_id == first_run
        for before, after in zip(runs, runs[1:]):
            assert before.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            assert after.events[0].workflow_execution_started_event_attributes.continued_execution_run_id == \
                before.run_id
        # One signal per event, the first one carried by the start.
        signals = [e for run in runs for e in run.events
                   if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        assert len(signals) == 3


async def test_search_attributes_are_set_and_upserted_only_when_they_change(env, pool, member_id, task_queue):
    """LifecycleStage, SubscriptionStatus and PurchaseCount for the operators' lists; the next
    touch is in the members read model, not a search attribute that would cost an upsert at
    nearly every wake-up (SPEC §6)."""
    async with running_worker(env.client, pool, task_queue):
        t0 = now()
        purchase = order(member_id, t0, "o1")
        handle = await send(env.client, task_queue, registered(member_id, t0), purchase)

        async def published():
            attributes = (await handle.describe()).typed_search_attributes
            assert attributes.get(LIFECYCLE_STAGE) == "f1"
            assert attributes.get(PURCHASE_COUNT) == 1
            assert attributes.get(SUBSCRIPTION_STATUS) == "none"
            assert attributes.get(NEXT_TOUCH_AT) is None
            next_touch_at = await pool.fetchval("SELECT next_touch_at FROM members WHERE member_id = $1", member_id)
            assert next_touch_at is not None and next_touch_at > t0
        await eventually(published)
        upserts = await attribute_upserts(handle)
        run = (await handle.describe()).run_id

        await send(env.client, task_queue, purchase)  # a duplicate: nothing changes

        await eventually(lambda: last_signal_processed(handle))
        assert await attribute_upserts(handle) == upserts
        assert (await handle.describe()).run_id == run  # nor published by continuing as new

        async def listed():
            found = [w.id async for w in env.client.list_workflows(
                f'LifecycleStage = "f1" AND PurchaseCount = 1 AND WorkflowId = "member-{member_id}"'
                f' AND ExecutionStatus = "Running"')]
            assert found == [f"member-{member_id}"]
        await eventually(listed)


async def test_continue_as_new_keeps_the_state(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        t0 = now() - days(5)
        handle = await send(env.client, task_queue, registered(member_id, t0))
        first_run = (await handle.describe()).run_id
        orders = [order(member_id, t0 + days(i * 0.01), f"o{i}") for i in range(30)]
        for purchase in orders:
            await send(env.client, task_queue, purchase)

        async def all_folded_after_continue_as_new():
            view = await state_of(handle)
            assert view.purchase_count == 30
            assert (await handle.describe()).run_id != first_run
        await eventually(all_folded_after_continue_as_new, timeout=30)
        first = env.client.get_workflow_handle(handle.id, run_id=first_run)
        assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
        view = await state_of(handle)
        assert view.stage is Stage.ESTABLISHED
        assert view.registered_at == t0


async def test_contact_data_never_enters_the_history(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        raw = {
            "type": "member_registered", "event_id": f"{member_id}-r", "member_id": member_id,
            "occurred_at": now().isoformat(), "consent": {"email": True, "line": True},
            "contact": {"email": "hanako.yamada@example.jp", "line_user_id": "U4af4980629", "phone": "090-1234-5678"},
        }
        events = await strip_contacts(pool, [parse_event(raw)])
        await forward(env.client, events, task_queue)
        handle = env.client.get_workflow_handle(f"member-{member_id}")

        async def reachable():
            view = await state_of(handle)
            assert set(view.reachable_channels) == {"email", "line", "sms"}
            assert view.consented_channels == ("email", "line")
        await eventually(reachable)
        # Payloads are stored deflated: read them decoded, as the Web UI shows them.
        runs = await all_runs(env.client, handle.id)
        stored = b"".join(decode_history(e).SerializeToString() for run in runs for e in run.events)
        assert b'"type":"member_registered"' in stored  # the registration is there, readable...
        for personal in ("hanako.yamada@example.jp", "U4af4980629", "090-1234-5678"):
            assert personal.encode() not in stored  # ...without the contact it came with


async def test_a_malformed_signal_is_dropped_without_failing_the_workflow(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        handle = await send(env.client, task_queue, order(member_id, now(), "o1"))
        await handle.signal("event", {"type": "order_placed", "member_id": member_id})  # bypasses the edge
        await send(env.client, task_queue, order(member_id, now(), "o2"))

        async def still_running():
            assert (await state_of(handle)).purchase_count == 2
        await eventually(still_running)
        assert not await history_events(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)


async def test_erasure_deletes_personal_data_and_ends_the_member(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        await store_contacts(pool, {member_id: parse_event({
            "type": "member_registered", "event_id": "x", "member_id": member_id, "occurred_at": now().isoformat(),
            "contact": {"email": "erase.me@example.jp"}}).contact})
        handle = await send(env.client, task_queue, order(member_id, now(), "o1"))
        await send(env.client, task_queue, event("member_erased", member_id, now()))
        result = await asyncio.wait_for(handle.result(), timeout=20)
        assert result.stage is Stage.ERASED
        assert await pool.fetchval("SELECT count(*) FROM member_contacts WHERE member_id = $1", member_id) == 0
        forwarded = await forward(env.client, [order(member_id, now(), "o2")], task_queue)
        assert forwarded.signalled == 0 and "erased" in forwarded.refused[0]


async def test_an_event_that_does_not_move_the_next_touch_keeps_the_timer(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        t0 = now()
        handle = await send(env.client, task_queue, registered(member_id, t0), order(member_id, t0, "o1"))

        async def sleeping():
            assert len(await history_events(handle, EventType.EVENT_TYPE_TIMER_STARTED)) == 1
        await eventually(sleeping)
        timers = 1
        await send(env.client, task_queue, event("consent_changed", member_id, t0, channel="sms", granted=True))

        await eventually(lambda: last_signal_processed(handle))
        assert len(await history_events(handle, EventType.EVENT_TYPE_TIMER_STARTED)) == timers
        assert not await history_events(handle, EventType.EVENT_TYPE_TIMER_CANCELED)
