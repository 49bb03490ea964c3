"""Benchmark 1 — cost per member-year: Temporal Cloud billable actions of the reference personas.

Each persona's year of events goes through the ingress (contacts stored in
PostgreSQL and stripped, then one signal-with-start per event) at its time on
the time-skipping test server, to the real MemberWorkflow on a worker with the
production activities on an embedded PostgreSQL. The five members run side by
side on one server clock. After 365 days every run of each member's workflow is
fetched and its actions counted (bench/actions.py). No query or update is made.

The floor is what any design must spend: one signal per order-system event and
one activity per touch actually sent.

    python -m bench.cost [--quick]
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench import actions as billing
from bench import pricing
from bench.common import Stack, Target, stack_for, table
from bench.personas import PERSONAS, YEAR, Persona, local_midnight_after
from starter.ingress import signal_with_start, strip_contacts
from worker.main import build_worker
from worker.settings import Settings
from workflows.events import MemberEvent
from workflows.member import workflow_id

TARGET_RATIO = 1.8  # issue 14


@dataclass
class PersonaCost:
    persona: Persona
    member_id: str
    events: int
    actions: billing.Actions
    histories: list[WorkflowHistory]  # oldest run first
    year_end: datetime  # the simulated year's end (t0 + 365 days)

    @property
    def dollars(self) -> pricing.Dollars:
        return pricing.member_year(self.histories, self.actions.total, self.year_end)

    @property
    def floor(self) -> int:
        return self.events + self.actions.touches_sent

    @property
    def ratio(self) -> float:
        return self.actions.total / self.floor

    @property
    def above_floor(self) -> dict[str, int]:
        """What the actions above the floor are, by cause (activities by what they did)."""
        a = self.actions
        causes = {
            "workflow started": a.by_kind["workflow started"],
            "signals beyond one per event": a.by_kind["signals"] - self.events,
            "timers": a.by_kind["timers"],
            "search-attribute upserts": a.by_kind["search-attribute upserts"],
            "queries+updates": a.by_kind["queries+updates"],
        }
        for label, attempts in a.activities.items():
            extra = attempts - a.touches_sent if label == billing.SENT else attempts
            causes[f"activity {label}" if label != billing.SENT else "activity deliver_touch:sent retries"] = extra
        return causes


@dataclass
class CostResult:
    personas: list[PersonaCost]
    wall_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_actions(self) -> int:
        return sum(p.actions.total for p in self.personas)

    @property
    def total_floor(self) -> int:
        return sum(p.floor for p in self.personas)

    @property
    def ratio(self) -> float:
        return self.total_actions / self.total_floor

    @property
    def total_sent(self) -> int:
        return sum(p.actions.touches_sent for p in self.personas)

    def by_name(self, name: str) -> PersonaCost:
        return next(p for p in self.personas if p.persona.name == name)

    @property
    def dollars(self) -> pricing.Dollars:
        """All the personas' member-years together (``.per_member()``: the average member-year)."""
        total = self.personas[0].dollars
        for p in self.personas[1:]:
            total = total + p.dollars
        return total

    def targets(self) -> list[Target]:
        worst = max(self.personas, key=lambda p: p.ratio)
        dollars = self.dollars.per_member()
        dearest = max(self.personas, key=lambda p: p.dollars.total_usd)
        n = len(self.personas)
        return [
            Target("cost", f"actions {self.ratio:.2f}x floor ({n} personas, total)", f"<= {TARGET_RATIO}x",
                   self.ratio <= TARGET_RATIO),
            Target("cost", f"  worst persona {worst.persona.name} {worst.ratio:.2f}x", f"<= {TARGET_RATIO}x", None),
            Target("cost", f"${dollars.total_usd:.4f} per member-year (mean of {n})", f"< ${pricing.TARGET_USD}",
                   dollars.total_usd < pricing.TARGET_USD),
            Target("cost", f"  dearest {dearest.persona.name} ${dearest.dollars.total_usd:.4f}",
                   f"< ${pricing.TARGET_USD}", None),
        ]


async def run_personas(env: WorkflowEnvironment, pool, personas=PERSONAS, *, member_suffix: str = ""
                       ) -> list[tuple[Persona, str, list[MemberEvent], list[WorkflowHistory], datetime]]:
    """A year of each persona, side by side on ``env``'s clock; returns each member's histories (all runs)
    and the year's end."""
    client = env.client
    task_queue = f"bench-cost-{uuid.uuid4().hex[:8]}"
    t0 = local_midnight_after(await env.get_current_time())
    members = [(p, f"bench-{p.name}{member_suffix}") for p in personas]
    streams = {member: p.events(t0, member) for p, member in members}
    timeline = sorted((e for events in streams.values() for e in events), key=lambda e: e.occurred_at)
    end = t0 + YEAR
    # A workflow-task bug would be retried for ever and stall the clock: fail the workflow instead.
    worker = build_worker(client, pool, Settings(task_queue=task_queue, max_cached_workflows=100),
                          workflow_failure_exception_types=[Exception])
    async with worker:
        try:
            started: set[str] = set()
            for event in timeline:
                await _sleep_until(env, event.occurred_at)
                (stripped,) = await strip_contacts(pool, [event])
                # As the forwarder does: a member's first event has nothing logged before it to restore.
                await signal_with_start(client, stripped, task_queue, restore=event.member_id in started)
                started.add(event.member_id)
            await _sleep_until(env, end)
            histories = {member: await all_runs(client, workflow_id(member)) for _, member in members}
        finally:
            for _, member in members:
                try:
                    await client.get_workflow_handle(workflow_id(member)).terminate("benchmark finished")
                except RPCError:
                    pass  # already closed
    return [(p, member, streams[member], histories[member], end) for p, member in members]


async def _sleep_until(env: WorkflowEnvironment, moment: datetime) -> None:
    remaining = moment - await env.get_current_time()
    if remaining > timedelta(0):
        await env.sleep(remaining)


async def all_runs(client: Client, workflow: str) -> list[WorkflowHistory]:
    """Every run of ``workflow``, oldest first, following continue-as-new back from the latest run."""
    runs: list[WorkflowHistory] = []
    run_id = ""
    while True:
        history = await _history(client, workflow, run_id)
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id
        if not run_id:
            return list(reversed(runs))


async def _history(client: Client, workflow: str, run_id: str) -> WorkflowHistory:
    events, token = [], b""
    while True:
        response = await client.workflow_service.get_workflow_execution_history(GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow, run_id=run_id),
            next_page_token=token,
        ))
        events.extend(response.history.events)
        token = response.next_page_token
        if not token:
            return WorkflowHistory(workflow, events)


async def measure(stack: Stack | None = None, quick: bool = False, personas=PERSONAS) -> CostResult:
    """``quick`` changes nothing here: a simulated year of the five personas takes seconds either way."""
    async with stack_for(stack) as stack:
        pool = await stack.database("cost")
        env = await stack.time_skipping()
        try:
            started = asyncio.get_running_loop().time()
            runs = await run_personas(env, pool, personas)
            wall = asyncio.get_running_loop().time() - started
        finally:
            await env.shutdown()
    return CostResult(
        personas=[PersonaCost(p, member, len(events), billing.count(histories), histories, end)
                  for p, member, events, histories, end in runs],
        wall_seconds=wall,
    )


def report(result: CostResult) -> str:
    kinds = billing.KINDS
    short = {"workflow started": "start", "signals": "signal", "timers": "timer", "activities": "activity",
             "search-attribute upserts": "upsert", "queries+updates": "query/upd"}
    rows = []
    for p in result.personas:
        a = p.actions
        rows.append([p.persona.name, p.events, a.touches_sent, *(a.by_kind[k] for k in kinds), a.total, p.floor,
                     f"{p.ratio:.2f}x", f"{a.history_bytes / 1024:.1f}", a.history_events, a.runs])
    rows.append(["all five", sum(p.events for p in result.personas),
                 sum(p.actions.touches_sent for p in result.personas),
                 *(sum(p.actions.by_kind[k] for p in result.personas) for k in kinds),
                 result.total_actions, result.total_floor, f"{result.ratio:.2f}x",
                 f"{sum(p.actions.history_bytes for p in result.personas) / 1024:.1f}",
                 sum(p.actions.history_events for p in result.personas),
                 sum(p.actions.runs for p in result.personas)])
    header = ["persona (1 member-year)", "events", "sent", *(short[k] for k in kinds), "actions", "floor",
              "ratio", "hist KiB", "hist ev", "runs"]
    lines = [
        "== 1. Cost per member-year (Temporal Cloud actions; floor = events + touches sent) ==",
        f"time-skipping test server, real MemberWorkflow + production activities on PostgreSQL; "
        f"{result.wall_seconds:.1f} s wall for the five member-years",
        table(rows, header),
        "",
    ]
    totals = {k: sum(p.actions.by_kind[k] for p in result.personas) for k in kinds}
    share = ", ".join(f"{k} {100 * n / result.total_actions:.0f}%"
                      for k, n in sorted(totals.items(), key=lambda kv: -kv[1]) if n)
    lines.append(f"share of all actions: {share}")
    activity_labels: Counter = Counter()
    for p in result.personas:
        activity_labels.update(p.actions.activities)
    lines.append("activity attempts by what they did: " + ", ".join(
        f"{label} {n}" for label, n in sorted(activity_labels.items(), key=lambda kv: -kv[1])))
    above: dict[str, int] = {}
    for p in result.personas:
        for cause, n in p.above_floor.items():
            above[cause] = above.get(cause, 0) + n
    excess = result.total_actions - result.total_floor
    lines.append(f"above the floor ({excess} actions): " + ", ".join(
        f"{cause} {n}" for cause, n in sorted(above.items(), key=lambda kv: -kv[1]) if n))
    unsent: Counter = Counter()
    for p in result.personas:
        unsent.update(p.actions.unsent)
    lines.append(f"touches recorded without a send ({sum(unsent.values())}): "
                 + ", ".join(f"{what} {n}" for what, n in unsent.most_common()))
    upserts: Counter = Counter()
    for p in result.personas:
        upserts.update(p.actions.upserts)
    only_next = upserts.get("NextTouchAt", 0)
    lines.append(f"search-attribute upserts: {only_next} of {sum(upserts.values())} set only NextTouchAt; "
                 + ", ".join(f"{fields} {n}" for fields, n in upserts.most_common()))
    timers = sum(p.actions.by_kind["timers"] for p in result.personas)
    cancelled = sum(p.actions.timers_cancelled for p in result.personas)
    lines.append(f"timers: {timers} started, {cancelled} of them cancelled and replaced before firing "
                 f"(an event moved the wake-up); {timers - cancelled} fired or pending at the year's end, "
                 f"for the {result.total_sent} sent touches, unsent outcomes and stage changes")
    exempt = sum(p.actions.exempt_upserts for p in result.personas)
    markers = sum(p.actions.markers for p in result.personas)
    retries = sum(p.actions.retries for p in result.personas)
    lines.append(f"not counted: {markers} patch markers, {exempt} TemporalChangeVersion-only upserts; "
                 f"activity retries included above: {retries}; queries/updates made by the benchmark: 0")
    lines += ["", dollars_report(result)]
    lines += result.notes
    return "\n".join(lines)


def dollars_report(result: CostResult) -> str:
    """Dollars per member-year on Temporal Cloud's list prices (bench/pricing.py), per persona and the mean."""
    def row(name: str, d: pricing.Dollars) -> list[object]:
        mark = "met" if d.total_usd < pricing.TARGET_USD else "MISSED"
        return [name, d.actions, f"{d.actions_usd:.5f}", f"{d.mean_active_bytes / 1024:.1f}", f"{d.active_usd:.5f}",
                f"{d.retained_usd:.5f}", f"{d.total_usd:.5f}", mark, f"{d.carried_usd:.5f}"]

    rows = [row(p.persona.name, p.dollars) for p in result.personas]
    mean = result.dollars.per_member()
    rows.append([f"mean of {len(result.personas)}", *row("", mean)[1:]])
    total = result.dollars
    share = {k: v / total.total_usd if total.total_usd else 0.0
             for k, v in (("actions", total.actions_usd), ("active storage", total.active_usd),
                          ("retained storage", total.retained_usd))}
    return "\n".join([
        f"== Dollars per member-year (Temporal Cloud list prices: ${pricing.USD_PER_ACTION * 1e6:.0f} per million "
        f"actions, ${pricing.USD_PER_ACTIVE_GB_HOUR} per GB-h active, ${pricing.USD_PER_RETAINED_GB_HOUR} per GB-h "
        f"retained for {pricing.RETENTION.days} days; target < ${pricing.TARGET_USD}) ==",
        table(rows, ["persona (1 member-year)", "actions", "actions $", "open hist KiB (mean)", "active $",
                     "retained $", "total $", f"< ${pricing.TARGET_USD}", "next year's carry-in $"]),
        "open hist KiB (mean): the open history's size averaged over the year (each event's bytes from its time "
        "until its run closes or the year ends)",
        "share of the dollars: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in share.items())
        + f"; next year's carry-in (not in the total): a run still open at the year's end starts the next "
          f"year at its full size, at least ${mean.carried_usd:.4f} of active storage a member unless it "
          f"continues as new",
    ])


if __name__ == "__main__":
    from bench.common import run_alone

    run_alone(__doc__.splitlines()[0], measure, report)
