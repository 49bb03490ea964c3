"""The forwarder on its own: per member in seq order, each event marked once, progress per member."""

from __future__ import annotations

import uuid

from bench.cost import all_runs
from starter.ingress.forwarder import Forwarder, forward_lag
from starter.ingress.log import accept
from tests.factories import jst, order, registered


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
