"""BroadcastWorkflow on the time-skipping test server with the real worker and PostgreSQL:
a run to 40 members made with events, each member's touch decided by its own workflow.

One fresh database per test: a segment of every member must see only this test's members.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from starter.broadcasts.runs import AlreadySent, runs, start_run
from starter.ingress.log import accept
from tests.factories import days, event, registered
from tests.workflows.helpers import eventually, next_local_noon, running_worker, send
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, Stage, workflow_id
from workflows.events import parse_event
from workflows.policy import bucket
from workflows.segments import Segment

NAME, RUN = "weekly_news", "2026w50"
HOLDOUT = 20


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


def no_consent(member_id: str, at):
    return event("member_registered", member_id, at, sales_channel="online",
                 consent={"email": False, "line": False, "sms": False, "push": False, "dm": False},
                 contact={"email": f"{member_id}@example.jp"})


def earlier_run(member_id: str, at, run: str):
    """A run of another broadcast the member was sent (no holdout): a touch toward the cap."""
    return parse_event({"type": "broadcast_requested", "event_id": f"bc:news_flash:{run}:{member_id}",
                        "member_id": member_id, "occurred_at": at.isoformat(), "broadcast": "news_flash",
                        "run": run, "template": "weekly_news", "channel": "email", "holdout_percent": 0})


def held_out(member_id: str) -> bool:
    return bucket(member_id, f"BC:{NAME}", "holdout") < HOLDOUT


def broadcast(run: str = RUN) -> BroadcastInput:
    return BroadcastInput(name=NAME, run=run, segment_name="everyone", segment=Segment(description="全会員"),
                          template="weekly_news", channel="email", holdout_percent=HOLDOUT,
                          rate_per_second=5, page_size=7)


async def test_each_member_of_the_audience_is_requested_once_and_decided_by_its_own_policy(
        env, versions_pool, task_queue):
    pool = versions_pool
    eligible = [f"e{n:02d}" for n in range(26)]
    silent = [f"n{n}" for n in range(6)]  # registered without any consent
    capped_early = [f"c{n}" for n in range(3)]  # three sends five days before the run: the cap frees in 2
    capped_now = [f"d{n}" for n in range(3)]  # three sends just before: the cap frees after the 3 days allowed
    erased, erased_late = "x1", "x2"  # erased before the run; erased after its audience was taken
    everyone = [*eligible, *silent, *capped_early, *capped_now, erased, erased_late]
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        await send(env.client, task_queue, *(registered(m, t0, line=False, reachable=("email",))
                                              for m in everyone if m not in silent))
        await send(env.client, task_queue, *(no_consent(m, t0) for m in silent))
        await send(env.client, task_queue, *(earlier_run(m, t0, f"w{k}") for m in capped_early for k in range(3)))
        await env.sleep(days(5))
        now = t0 + days(5)
        await send(env.client, task_queue, *(earlier_run(m, now - timedelta(hours=1), f"v{k}")
                                              for m in capped_now for k in range(3)))
        await send(env.client, task_queue, event("member_erased", erased, now - timedelta(hours=1)))

        async def projected():
            stages = dict(await pool.fetch("SELECT member_id, stage FROM members"))
            assert len(stages) == len(everyone) and stages[erased] == "erased"
            sent = await pool.fetchval("SELECT count(*) FROM touches WHERE occurrence LIKE 'v%'")
            assert sent == 3 * len(capped_now)

        await eventually(projected)
        # x2's erasure is in the event log, not yet in its workflow nor in the members table:
        # the audience still names x2, and the ingress refuses its request.
        late = event("member_erased", erased_late, now - timedelta(minutes=30))
        await accept(pool, [(1, late)])

        await start_run(env.client, pool, broadcast(), task_queue)
        handle = env.client.get_workflow_handle_for(BroadcastWorkflow.run, workflow_id(NAME, RUN))
        progress = await handle.result()
        await send(env.client, task_queue, late)
        await env.sleep(days(3))  # the capped members' postponed touches are decided

        assert (progress.stage, progress.audience, progress.reached) == (Stage.FINISHED, 39, 39)
        assert (progress.requested, progress.refused, progress.unforwarded, progress.pages) == (38, 1, 0, 6)
        rows = await pool.fetch("SELECT member_id, outcome, reason, decided_at FROM touches"
                                " WHERE scenario = 'BC' AND step = $1 AND occurrence = $2", NAME, RUN)
        touches = {r["member_id"]: r for r in rows}
        assert len(rows) == len(touches) == 38  # one touch per member requested
        assert erased not in touches and erased_late not in touches
        outcome = {m: (r["outcome"], r["reason"]) for m, r in touches.items()}
        for m in touches:
            if held_out(m):
                assert outcome[m] == ("holdout", f"holdout:{HOLDOUT}%"), m
            elif m in silent:
                assert outcome[m] == ("suppressed", "no_channel"), m
            elif m in capped_now:
                assert outcome[m] == ("suppressed", "frequency_cap"), m
            else:
                assert outcome[m] == ("sent", "route:email"), m
        for m in capped_early:  # sent once the cap freed a slot: 7 days after the first of their earlier sends
            first = await pool.fetchval("SELECT min(decided_at) FROM touches WHERE member_id = $1"
                                        " AND step = 'news_flash'", m)
            assert held_out(m) or timedelta(0) <= touches[m]["decided_at"] - (first + days(7)) < timedelta(minutes=1)
        held = sum(held_out(m) for m in touches)
        assert 0 < held < len(touches) and any(not held_out(m) for m in [*silent, *capped_now])

        # What `broadcast show` counts of the run.
        [figures] = await runs(pool, NAME, RUN)
        assert (figures.status, figures.audience, figures.requested, figures.refused) == ("finished", 39, 38, 1)
        assert figures.outcomes["holdout"] == held and figures.waiting == 0
        assert figures.outcomes["sent"] == sum(o == "sent" for o, _ in outcome.values())
        assert figures.suppressed == {r: sum(1 for o, why in outcome.values() if why == r and o == "suppressed")
                                      for r in ("no_channel", "frequency_cap") if any(
                                          why == r for _, why in outcome.values())}

        # A run is sent once: a second start of it is refused, and nothing more is requested.
        with pytest.raises(AlreadySent, match=f"run {RUN} of broadcast {NAME} was already sent"):
            await start_run(env.client, pool, broadcast(), task_queue)
        assert await pool.fetchval("SELECT count(*) FROM member_events WHERE type = 'broadcast_requested'"
                                   " AND event_id LIKE $1", f"bc:{NAME}:{RUN}:%") == 38


async def test_a_run_whose_workflow_is_another_is_refused_by_its_snapshot(env, versions_pool, task_queue):
    """The run's row names its one workflow: a second workflow of the same run (a schedule's
    and a hand-started one) fails at its snapshot and sends nothing."""
    pool = versions_pool
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        await send(env.client, task_queue, registered("a1", t0, line=False, reachable=("email",)))
        await eventually(lambda: _members(pool, 1))
        first = await env.client.execute_workflow(BroadcastWorkflow.run, broadcast("r1"), id="broadcast-one",
                                                  task_queue=task_queue)
        assert first.requested == 1
        with pytest.raises(WorkflowFailureError) as failed:
            await env.client.execute_workflow(BroadcastWorkflow.run, broadcast("r1"), id="broadcast-two",
                                              task_queue=task_queue)
        assert "run r1 of broadcast weekly_news was already sent by workflow broadcast-one" in str(
            failed.value.cause.cause)
        assert await pool.fetchval("SELECT count(*) FROM member_events WHERE type = 'broadcast_requested'") == 1


async def _members(pool, n: int) -> None:
    assert await pool.fetchval("SELECT count(*) FROM members") == n
