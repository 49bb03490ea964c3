"""The forwarder on its own: per member in seq order, each event marked once, progress per member."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from bench.cost import all_runs
from starter.ingress.forwarder import Forwarder, forward_lag
from starter.ingress.log import accept
from tests.factories import jst, order, registered
from worker.converter import decompress
from workflows.search import LIFECYCLE_STAGE, PURCHASE_COUNT, SUBSCRIPTION_STATUS


async def test_each_members_events_are_forwarded_once_and_progress_counts_members(dev_server_env, pool):
    run = uuid.uuid4().hex[:6]
    members = [f"fwd-{run}-{n}" for n in range(3)]
    t0 = jst(2026, 4, 1)
    events = [e for m in members for e in (registered(m, t0), order(m, t0, "o1"))]
    await accept(pool, list(enumerate(events, start=1)))
    assert (await forward_lag(pool)) is not None  # they wait in the log

    done: list[int] = []
    forwarder = Forwarder(pool, dev_server_env.client, f"fwd-{run}")  # no worker needed: signals are taken
    result = await forwarder.forward_pending(members, progress=lambda: done.append(1))
    assert (result.forwarded, result.members, len(done)) == (6, 3, 3)
    again = await forwarder.forward_pending(members)
    assert (again.forwarded, again.members) == (0, 0)  # nothing forwarded twice
    rows = await pool.fetch("SELECT member_id, seq, forwarded_at FROM member_events"
                            " WHERE member_id = ANY($1::text[]) ORDER BY member_id, seq", members)
    assert [r["seq"] for r in rows] == [1, 2] * 3 and all(r["forwarded_at"] for r in rows)
    for m in members:
        runs = await all_runs(dev_server_env.client, f"member-{m}")  # it may have continued as new
        signalled = [e for run in runs for e in run.events if e.HasField("workflow_execution_signaled_event_attributes")]
        assert len(signalled) == 2  # registration, then the order: once each
        await dev_server_env.client.get_workflow_handle(f"member-{m}").terminate("test finished")


def _started_input(history) -> dict:
    started = history.events[0].workflow_execution_started_event_attributes
    return json.loads(decompress(started.input.payloads[0]).data)


async def test_a_new_member_starts_without_a_restore_and_a_restarted_one_restores(dev_server_env, pool):
    """A run started by the member's first logged event has nothing to reload (no restore
    activity); a run started after the member's earlier run was lost reloads the log."""
    run = uuid.uuid4().hex[:6]
    member = f"fwd-{run}-new"
    t0 = jst(2026, 4, 1)
    await accept(pool, [(1, registered(member, t0)), (2, order(member, t0, "o1"))])
    forwarder = Forwarder(pool, dev_server_env.client, f"fwd-{run}")
    assert (await forwarder.forward_pending([member])).forwarded == 2
    handle = dev_server_env.client.get_workflow_handle(f"member-{member}")
    assert _started_input(await handle.fetch_history())["restore"] is False
    # No worker runs here: the operators' search attributes are the ones the run was started
    # with, its first event's (a registration: a prospect), so its first task changes none.
    attributes = (await handle.describe()).typed_search_attributes
    assert (attributes.get(LIFECYCLE_STAGE), attributes.get(PURCHASE_COUNT),
            attributes.get(SUBSCRIPTION_STATUS)) == ("prospect", 0, "none")

    await handle.terminate("the run was lost")
    await accept(pool, [(3, order(member, t0 + timedelta(days=30), "o2"))])
    assert (await forwarder.forward_pending([member])).forwarded == 1
    latest = await handle.fetch_history()  # the run the third event started
    assert _started_input(latest)["restore"] is True
    # What a restored member's attributes are is known only once its log is reloaded.
    assert (await handle.describe()).typed_search_attributes.get(LIFECYCLE_STAGE) is None
    await handle.terminate("test finished")
