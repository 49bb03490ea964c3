"""``make faults``: a broadcast to 1,000 members with the worker killed -9 half-way (issue 13).

The dev server, an embedded PostgreSQL, the SMTP stand-in (it counts the messages it kept
per Message-ID, which is fixed per touch) and the real worker — ``goldenroute worker`` in
a child process, its email sent to the stand-in. Members are registered through the
ingress: 8 in 10 reachable by email and consenting to it, 1 in 10 without any consent, 1 in
10 already at the frequency cap (three letters of another broadcast this week, on DM), 1 in
100 erased before the run. Then one run of a broadcast to every member (email, 10 %
holdout) at ``--rate`` members a second; once about half the audience is requested — a
page accepted and on its way to the workflows if the timing allows — the worker is killed
with SIGKILL and a new one started. The run must resume from its cursor and end with:
every member requested exactly once (one event in the log), one touch each (sent or
holdout for the eligible, ``suppressed no_channel`` without consent, ``suppressed
frequency_cap`` at the cap), one message at the stand-in per sent touch and none twice, no
touch for the erased, and a holdout share near 10 %.

    python -m bench.broadcast_faults [--members 1000] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from temporalio.client import Client

from activities.senders.mail import message_id
from bench.channel_faults import until
from bench.channel_storm import WorkerProcess
from bench.common import Stack, exit_with
from starter.broadcasts.runs import start_run
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import accept
from worker.standins.smtp import SmtpStandIn
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, workflow_id
from workflows.events import MemberEvent, parse_event
from workflows.segments import Segment

NAME, WARMUP = "weekly_news", "monthly_dm"
HOLDOUT = 10
MAIL_DOMAIN = "grk.example"  # the built-in example shop's sender (activities/example_shop.py)
SETTLE = 300.0
KINDS = ("eligible", "no_consent", "capped", "erased")


def kind_of(n: int) -> str:
    return "erased" if n % 100 == 55 else "no_consent" if n % 10 == 0 else "capped" if n % 10 == 1 else "eligible"


def member_events(member_id: str, kind: str, now: datetime) -> list[MemberEvent]:
    """A registration (and, for the erased, the erasure) as an order system sends them."""
    at = (now - timedelta(minutes=10)).isoformat()
    contact = {"email": f"{member_id}@example.jp"}
    consent = {"email": kind != "no_consent", "line": False, "sms": False, "push": False, "dm": kind == "capped"}
    if kind == "capped":
        contact["postal_address"] = "東京都千代田区千代田1-1"
    events = [parse_event({"type": "member_registered", "event_id": f"{member_id}-reg", "member_id": member_id,
                           "occurred_at": at, "sales_channel": "online", "consent": consent, "contact": contact})]
    if kind == "erased":
        events.append(parse_event({"type": "member_erased", "event_id": f"{member_id}-erase", "member_id": member_id,
                                   "occurred_at": (now - timedelta(minutes=5)).isoformat()}))
    return events


def letters(member_id: str, now: datetime) -> list[MemberEvent]:
    """Three runs of another broadcast this week, by post: the member is at the cap (3 in 7 days)."""
    return [parse_event({"type": "broadcast_requested", "event_id": f"bc:{WARMUP}:w{k}:{member_id}",
                         "member_id": member_id, "occurred_at": (now - timedelta(minutes=3 - k)).isoformat(),
                         "broadcast": WARMUP, "run": f"w{k}", "template": WARMUP, "channel": "dm",
                         "holdout_percent": 0}) for k in range(3)]


async def through_the_ingress(pool: asyncpg.Pool, client: Client, task_queue: str, events: list[MemberEvent]) -> None:
    for start in range(0, len(events), 1000):
        await accept(pool, list(enumerate(events[start:start + 1000], start=1)), source="broadcast-faults")
    forwarder = Forwarder(pool, client, task_queue)
    for _ in range(10):
        if not (await forwarder.forward_pending(sorted({e.member_id for e in events}))).members:
            return
    raise RuntimeError("the forwarder could not forward every event in 10 rounds")


@dataclass
class Kill:
    reached: int = 0  # members whose page was done when the worker was killed
    logged: int = 0  # members with a verdict: their page was accepted, perhaps not finished
    restart_seconds: float = 0.0


@dataclass
class Result:
    members: dict[str, str]  # member → kind
    outcomes: dict[str, Counter] = field(default_factory=dict)  # kind → "outcome reason" → members
    requested_events: int = 0  # broadcast_requested of the run in the event log
    audience: int = 0
    requested: int = 0
    refused: int = 0
    touches: int = 0
    members_with_touch: int = 0
    copies: Counter = field(default_factory=Counter)  # messages at the stand-in per sent touch → touches
    erased_touched: int = 0
    kill: Kill = field(default_factory=Kill)
    pages: int = 0
    run_seconds: float = 0.0
    settled: bool = False

    @property
    def expected_audience(self) -> int:
        return sum(1 for k in self.members.values() if k != "erased")

    @property
    def holdout_share(self) -> float:
        held = sum(c[f"holdout holdout:{HOLDOUT}%"] for c in self.outcomes.values())
        return held / self.touches if self.touches else 0.0

    @property
    def problems(self) -> list[str]:
        found = [] if self.settled else ["not every touch was decided and sent in time"]
        if self.requested_events != self.expected_audience or self.requested != self.expected_audience:
            found.append(f"{self.requested_events} events / {self.requested} requested for {self.expected_audience} members")
        if self.touches != self.expected_audience or self.members_with_touch != self.expected_audience:
            found.append(f"{self.touches} touches for {self.members_with_touch} of {self.expected_audience} members")
        if self.erased_touched:
            found.append(f"{self.erased_touched} erased members have a touch")
        if any(n != 1 for n in self.copies):
            found.append(f"messages at the SMTP stand-in per sent touch: {dict(self.copies)}")
        expected = {"eligible": {"sent route:email"}, "no_consent": {"suppressed no_channel"},
                    "capped": {"suppressed frequency_cap"}}
        for kind, allowed in expected.items():
            wrong = set(self.outcomes.get(kind, {})) - allowed - {f"holdout holdout:{HOLDOUT}%"}
            if wrong:
                found.append(f"{kind}: unexpected outcomes {sorted(wrong)}")
        # Members are held out by a hash of their (random) ids: the share is binomial. Four
        # standard deviations: 10 ± 3.8 % for 1,000 members, ± 8.5 % for the test's 198.
        p = HOLDOUT / 100
        spread = 4 * math.sqrt(p * (1 - p) / max(1, self.touches))
        if not p - spread <= self.holdout_share <= p + spread:
            found.append(f"holdout share {self.holdout_share:.1%} outside {p - spread:.1%}–{p + spread:.1%}")
        return found

    def ok(self) -> bool:
        return not self.problems


async def measure(pool: asyncpg.Pool, database_url: str, client: Client, temporal_address: str, home: Path, *,
                  members: int, rate: float, page_size: int = 50, log=print) -> Result:
    began = time.monotonic()
    progress = lambda line: log(f"{time.monotonic() - began:6.1f} s  {line}")  # noqa: E731
    name = uuid.uuid4().hex[:6]
    kinds = {f"bf-{name}-{n:05d}": kind_of(n) for n in range(members)}
    result = Result(kinds)
    task_queue = f"broadcast-faults-{name}"
    async with SmtpStandIn() as smtp:
        env = {"TEMPORAL_ADDRESS": temporal_address, "DATABASE_URL": database_url, "TASK_QUEUE": task_queue,
               "SMTP_URL": smtp.url, "CHANNEL_RATES": "email=500", "CHANNEL_CONCURRENCY": "email=20",
               "METRICS_PORT": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
        workers = [WorkerProcess(env, home / f"{task_queue}-worker-1.log")]
        await workers[0].start()
        try:
            now = datetime.now(timezone.utc)
            progress(f"{members} members through the ingress")
            await through_the_ingress(pool, client, task_queue,
                                      [e for m, k in kinds.items() for e in member_events(m, k, now)])
            capped = [m for m, k in kinds.items() if k == "capped"]
            await through_the_ingress(pool, client, task_queue, [e for m in capped for e in letters(m, now)])

            async def ready() -> bool:
                row = await pool.fetchrow(
                    "SELECT (SELECT count(*) FROM members) AS members, (SELECT count(*) FROM touches"
                    " WHERE step = $1 AND outcome = 'sent') AS letters", WARMUP)
                return row["members"] == members and row["letters"] == 3 * len(capped)

            if not await until(ready, SETTLE, 0.5):
                raise TimeoutError("the members were not projected, or the letters not sent, in time")

            progress(f"broadcast to {result.expected_audience} members at {rate:g}/s, pages of {page_size}")
            run = BroadcastInput(name=NAME, run=f"bf{name}", segment_name="everyone",
                                 segment=Segment(description="全会員"), template=NAME, channel="email",
                                 holdout_percent=HOLDOUT, rate_per_second=rate, page_size=page_size)
            started = time.monotonic()
            await start_run(client, pool, run, task_queue)
            handle = client.get_workflow_handle_for(BroadcastWorkflow.run, workflow_id(NAME, run.run))
            result.kill = await kill_half_way(pool, handle, run, result.expected_audience, workers, env, home, task_queue)
            progress(f"kill -9 with {result.kill.reached} members' pages done, {result.kill.logged} logged; "
                     f"a new worker polled {result.kill.restart_seconds:.1f} s later")
            done = await handle.result()
            result.run_seconds, result.pages = time.monotonic() - started, done.pages
            progress(f"run finished: {done.requested} requested, {done.refused} refused, {done.pages} pages")

            async def settled() -> bool:
                row = await pool.fetchrow(
                    "SELECT (SELECT count(*) FROM touches WHERE scenario = 'BC' AND step = $1) AS decided,"
                    " (SELECT count(*) FROM deliveries d JOIN touches t USING (idempotency_key) WHERE t.step = $1"
                    "  AND t.scenario = 'BC' AND d.state IN ('queued', 'sending')) AS open", NAME)
                return row["decided"] >= result.expected_audience and not row["open"]

            result.settled = await until(settled, SETTLE, 0.5)
            await figures(pool, result, run.run, smtp)
            progress("settled" if result.settled else "NOT settled")
        finally:
            for worker in workers:
                await worker.stop()
    return result


async def kill_half_way(pool: asyncpg.Pool, handle, run: BroadcastInput, audience: int, workers: list,
                        env: dict, home: Path, task_queue: str) -> Kill:
    """SIGKILL once half the audience is requested, preferably while a page is on its way to
    the workflows (its verdicts written, the page not yet done); then a new worker."""
    kill = Kill()

    async def logged() -> int:
        return await pool.fetchval("SELECT count(*) FROM broadcast_members WHERE broadcast = $1 AND run = $2"
                                   " AND verdict IS NOT NULL", run.name, run.run)

    if not await until(lambda: _at_least(logged, audience // 2), SETTLE, 0.02):
        raise TimeoutError("the run did not reach half its audience in time")
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        kill.logged = await logged()
        kill.reached = (await handle.query(BroadcastWorkflow.progress)).reached
        if kill.logged > kill.reached:  # a page accepted, not yet done
            break
        await asyncio.sleep(0.01)
    workers[-1].kill()
    began = time.monotonic()
    workers.append(WorkerProcess(env, home / f"{task_queue}-worker-{len(workers) + 1}.log"))
    await workers[-1].start()
    kill.restart_seconds = time.monotonic() - began
    return kill


async def _at_least(count, n: int) -> bool:
    return await count() >= n


async def figures(pool: asyncpg.Pool, result: Result, run: str, smtp: SmtpStandIn) -> None:
    ids = list(result.members)
    result.requested_events = await pool.fetchval(
        "SELECT count(*) FROM member_events WHERE type = 'broadcast_requested' AND event_id LIKE $1",
        f"bc:{NAME}:{run}:%")
    row = await pool.fetchrow(
        "SELECT r.audience, count(*) FILTER (WHERE b.verdict = 'requested') AS requested,"
        " count(*) FILTER (WHERE b.verdict = 'refused') AS refused FROM broadcast_runs r"
        " JOIN broadcast_members b USING (broadcast, run) WHERE r.broadcast = $1 AND r.run = $2 GROUP BY r.audience",
        NAME, run)
    result.audience, result.requested, result.refused = row["audience"], row["requested"], row["refused"]
    touches = await pool.fetch(
        "SELECT idempotency_key, member_id, outcome, reason FROM touches WHERE scenario = 'BC' AND step = $1"
        " AND occurrence = $2 AND member_id = ANY($3::text[])", NAME, run, ids)
    result.touches, result.members_with_touch = len(touches), len({t["member_id"] for t in touches})
    for t in touches:
        kind = result.members[t["member_id"]]
        result.outcomes.setdefault(kind, Counter())[f"{t['outcome']} {t['reason']}"] += 1
        result.erased_touched += kind == "erased"
        if t["outcome"] == "sent":
            result.copies[smtp.deliveries[message_id(t["idempotency_key"], MAIL_DOMAIN)]] += 1


def report(result: Result) -> str:
    lines = [f"== broadcast faults: one run to {len(result.members):,} members; the worker killed -9 half-way ==",
             f"kill -9 with {result.kill.reached:,} members' pages done and {result.kill.logged:,} in the log"
             f" (a page on its way: {'yes' if result.kill.logged > result.kill.reached else 'no'}); a new worker"
             f" polled {result.kill.restart_seconds:.1f} s later",
             f"run: audience {result.audience:,}, requested {result.requested:,} ({result.requested_events:,} events"
             f" in the log), refused {result.refused}, {result.pages} pages, {result.run_seconds:.0f} s",
             f"touches: {result.touches:,} for {result.members_with_touch:,} members; erased members touched:"
             f" {result.erased_touched}; holdout {result.holdout_share:.1%}",
             "messages at the SMTP stand-in per sent touch: "
             + (", ".join(f"{n} → {t:,} touches" for n, t in sorted(result.copies.items())) or "-")]
    for kind in KINDS:
        members = sum(1 for k in result.members.values() if k == kind)
        counts = result.outcomes.get(kind, Counter())
        lines.append(f"  {kind:<10} {members:>5,} members: "
                     + (", ".join(f"{o} {n:,}" for o, n in counts.most_common()) or "no touch"))
    lines.append("OK" if result.ok() else "FAILED: " + "; ".join(result.problems))
    return "\n".join(lines)


async def main(members: int, rate: float) -> int:
    stack = Stack()
    try:
        pool = await stack.database("broadcast_faults")
        env = await stack.dev_server()
        result = await measure(pool, stack.database_urls[pool], env.client, env.client.service_client.config.target_host,
                               stack.home, members=members, rate=rate, log=lambda line: print(line, flush=True))
    finally:
        await stack.close()
    print(report(result), flush=True)
    return 0 if result.ok() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000, help="members registered (1000)")
    parser.add_argument("--rate", type=float, default=100.0, help="the broadcast's members a second (100)")
    args = parser.parse_args()
    exit_with(main(args.members, args.rate))
