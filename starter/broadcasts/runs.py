"""A broadcast's definition as configured, the input of a run, starting one, and what its
runs did: audience, requests, and the touches the members' workflows decided.

A broadcast is looked up in the shop configuration applied last (``config_versions``),
or in ``--config FILE`` when one is given; its segment by the segments' own lookup
(database, the configuration applied last, the file).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from starter.segments.store import Found, latest_config, lookup
from worker.shop_config import LoadedShop
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, workflow_id
from workflows.broadcasts import BROADCAST
from workflows.shop import Broadcast


class AlreadySent(RuntimeError):
    """A run is sent once: its workflow (or its row in ``broadcast_runs``) exists."""


@dataclass(frozen=True)
class Configured:
    name: str
    broadcast: Broadcast
    origin: str  # "configuration version 3", "file examples/shop.toml"
    timezone: str  # the shop's: a schedule's cron is read in it
    policy_holdout: int  # the policy's share, for a broadcast that names none

    @property
    def holdout(self) -> int:
        return self.policy_holdout if self.broadcast.holdout_percent is None else self.broadcast.holdout_percent


async def configured(pool: asyncpg.Pool, shop_file: LoadedShop | None = None) -> list[Configured]:
    """The broadcasts of ``shop_file`` if given, else of the configuration applied last."""
    if shop_file is not None:
        config, origin = shop_file.config, f"file {shop_file.path}"
    else:
        latest = await latest_config(pool)
        if latest is None:
            return []
        config, origin = latest[1], f"configuration version {latest[0]}"
    return [Configured(name, b, origin, config.shop.timezone, config.policy.holdout_percent)
            for name, b in sorted(config.broadcasts.items())]


async def find(pool: asyncpg.Pool, name: str, shop_file: LoadedShop | None = None) -> Configured:
    every = await configured(pool, shop_file)
    for found in every:
        if found.name == name:
            return found
    where = f"in {shop_file.path}" if shop_file else (
        f"in the configuration applied last ({every[0].origin})" if every else
        "in the configuration applied last (none is applied: `goldenroute config apply FILE`, or --config FILE)")
    known = f"; configured: {', '.join(f.name for f in every)}" if every else ""
    raise LookupError(f"no broadcast {name!r} {where}{known}")


async def segment_of(pool: asyncpg.Pool, found: Configured, shop_file: LoadedShop | None) -> Found:
    try:
        return await lookup(pool, found.broadcast.segment, shop_file)
    except LookupError as error:
        raise LookupError(f"broadcast {found.name}: its segment: {error.args[0]}") from None


def run_input(found: Configured, segment: Found, *, run: str | None, as_of: datetime | None) -> BroadcastInput:
    b = found.broadcast
    return BroadcastInput(
        name=found.name, run=run, segment_name=segment.name, segment=segment.segment,
        template=b.template_name(found.name), channel=b.channel.value if b.channel else None,
        holdout_percent=b.holdout_percent, as_of=as_of, rate_per_second=b.rate_per_second,
    )


async def start_run(client: Client, pool: asyncpg.Pool, input: BroadcastInput, task_queue: str) -> str:
    """Start the run's workflow; its id. A run already started (by hand or by a schedule) is refused."""
    assert input.run is not None, "a run started by hand is named before it starts"
    known = await pool.fetchval("SELECT workflow_id FROM broadcast_runs WHERE broadcast = $1 AND run = $2",
                                input.name, input.run)
    wanted = workflow_id(input.name, input.run)
    if known is not None:
        raise AlreadySent(f"run {input.run} of broadcast {input.name} was already sent (workflow {known}): "
                          "a run is sent once; --run ID names another")
    try:
        await client.start_workflow(BroadcastWorkflow.run, input, id=wanted, task_queue=task_queue,
                                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    except WorkflowAlreadyStartedError:
        raise AlreadySent(f"run {input.run} of broadcast {input.name} was already started (workflow {wanted}): "
                          "a run is sent once; --run ID names another") from None
    return wanted


# --- what the runs did --------------------------------------------------------------------


@dataclass
class RunFigures:
    broadcast: str
    run: str
    workflow_id: str
    status: str  # sending, finished, cancelled
    started_at: datetime
    finished_at: datetime | None
    requested_at: datetime
    as_of: datetime
    audience: int
    definition: dict
    requested: int = 0  # in the event log
    refused: int = 0  # the member was erased since the snapshot
    outcomes: Counter = field(default_factory=Counter)  # sent, holdout, expired, cancelled, suppressed
    suppressed: Counter = field(default_factory=Counter)  # by reason: no_channel, frequency_cap, …

    @property
    def decided(self) -> int:
        return sum(self.outcomes.values())

    @property
    def waiting(self) -> int:
        """Requested, not yet decided: postponed by quiet hours or the cap, or on its way."""
        return max(0, self.requested - self.decided)

    @property
    def holdout_share(self) -> float | None:
        return self.outcomes["holdout"] / self.requested if self.requested else None


_RUNS = """
SELECT r.*,
       (SELECT count(*) FROM broadcast_members b WHERE (b.broadcast, b.run) = (r.broadcast, r.run)
          AND b.verdict = 'requested') AS requested,
       (SELECT count(*) FROM broadcast_members b WHERE (b.broadcast, b.run) = (r.broadcast, r.run)
          AND b.verdict = 'refused') AS refused
FROM broadcast_runs r
WHERE ($1::text IS NULL OR r.broadcast = $1) AND ($2::text IS NULL OR r.run = $2)
ORDER BY r.started_at DESC, r.broadcast, r.run
"""
_OUTCOMES = f"""
SELECT step AS broadcast, occurrence AS run, outcome, reason, count(*) AS n FROM touches
WHERE scenario = '{BROADCAST}' AND ($1::text IS NULL OR step = $1) AND ($2::text IS NULL OR occurrence = $2)
GROUP BY 1, 2, 3, 4
"""


async def runs(pool: asyncpg.Pool, name: str | None = None, run: str | None = None) -> list[RunFigures]:
    """Every run (of ``name``; only ``run``), newest first (by start), with its outcomes."""
    found = {}
    for r in await pool.fetch(_RUNS, name, run):
        found[(r["broadcast"], r["run"])] = RunFigures(
            broadcast=r["broadcast"], run=r["run"], workflow_id=r["workflow_id"], status=r["status"],
            started_at=r["started_at"], finished_at=r["finished_at"], requested_at=r["requested_at"],
            as_of=r["as_of"], audience=r["audience"], definition=json.loads(r["definition"]),
            requested=r["requested"], refused=r["refused"])
    for r in await pool.fetch(_OUTCOMES, name, run):
        figures = found.get((r["broadcast"], r["run"]))
        if figures is None:
            continue
        figures.outcomes[r["outcome"]] += r["n"]
        if r["outcome"] == "suppressed":
            figures.suppressed[r["reason"]] += r["n"]
    return list(found.values())
