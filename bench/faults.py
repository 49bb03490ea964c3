"""``make faults``: Temporal stopped for a minute in the middle of a stream of 1,000 members.

What an order system needs of the ingress (SPEC §6): an event it has accepted is never
lost, even while Temporal is down, and reaches its member exactly once, in order. An
embedded PostgreSQL, a Temporal dev server persisting to a file (so it can be stopped
and started again with its workflows), the real worker and a forwarder running as
``goldenroute serve`` runs it. The stream (eight events a member: registration, four
orders, three shipments) is accepted in batches of 1,000 events; after a third of it
the Temporal server is stopped for ``--outage`` seconds while accepting goes on, then
started again. The run prints its counts: events accepted, in the log, forwarded
(signals taken, so duplicates show), members whose workflow folded every order.

    python -m bench.faults [--members 1000] [--outage 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from temporalio.client import Client
from worker.converter import DATA_CONVERTER

from bench.common import Stack, quiet_logging, quiet_runtime, wait_until
from bench.personas import ingest_stream
from starter.ingress.forwarder import Forwarder, ForwardResult, forward_lag
from starter.ingress.log import accept
from worker.client import register_search_attributes
from worker.devstack import TemporalDevServer, free_port, start_temporal_dev_server
from worker.main import build_worker
from worker.settings import Settings

BATCH = 1000


@dataclass
class OutageResult:
    members: int
    events: int
    accepted: int
    logged: int
    forwarded: int  # signals the forwarders had taken, over every round
    unforwarded: int
    caught_up: int  # members whose workflow folded all four orders
    waiting_rounds: int  # forwarding rounds that found Temporal down
    waiting_at_restart: int  # accepted events still in the log, unforwarded, when Temporal came back
    outage_seconds: float
    catch_up_seconds: float  # from Temporal's restart to every member caught up

    @property
    def lost(self) -> int:
        return self.accepted - self.logged

    @property
    def duplicates(self) -> int:
        return self.forwarded - self.accepted

    def ok(self) -> bool:
        return (self.lost, self.duplicates, self.unforwarded) == (0, 0, 0) and self.caught_up == self.members


class _Forwarding:
    """A forwarder loop that keeps every round's counts."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder, self.rounds = forwarder, []

    async def run(self, interval: float = 0.2) -> None:
        while True:
            try:
                self.rounds.append(await self.forwarder.forward_pending())
            except Exception:  # PostgreSQL is never down here; Temporal errors stay inside a round
                self.rounds.append(ForwardResult(waiting=1))
            await asyncio.sleep(interval)


async def measure(stack: Stack, members: int, outage: float, log=print) -> OutageResult:
    pool = await stack.database("faults")
    home = stack.home / f"temporal-{uuid.uuid4().hex[:6]}"
    port, ui_port = free_port(), free_port()

    async def start() -> TemporalDevServer:
        return await start_temporal_dev_server(home / "temporal.db", port=port, ui_port=ui_port,
                                               namespace="default", headless=True)

    server = await start()
    client = await Client.connect(server.address, data_converter=DATA_CONVERTER, runtime=quiet_runtime())
    await register_search_attributes(client, "default")
    task_queue = f"faults-{uuid.uuid4().hex[:6]}"
    now = datetime.now(timezone.utc)
    run = uuid.uuid4().hex[:6]
    ids = [f"fault-{run}-{n:05d}" for n in range(members)]
    events = [e for m in ids for e in ingest_stream(m, now)]
    # Interleave members as a live stream would: everyone's first event, then everyone's second …
    stream = [events[m * 8 + k] for k in range(8) for m in range(members)]
    forwarding = _Forwarding(Forwarder(pool, client, task_queue))
    accepted = waiting = 0
    worker = build_worker(client, pool, Settings(task_queue=task_queue, max_cached_workflows=max(1000, members)))
    try:
        async with worker:
            loop = asyncio.create_task(forwarding.run())
            down_at = len(stream) // 3
            stopped = restarted = 0.0
            batch = max(10, min(BATCH, len(stream) // 10))
            for start_at in range(0, len(stream), batch):
                if start_at >= down_at and not stopped:
                    await server.stop()
                    stopped = time.monotonic()
                    log(f"Temporal stopped after {start_at} events; accepting goes on")
                verdicts = await accept(pool, list(enumerate(stream[start_at:start_at + batch], start=1)),
                                        source="faults")
                accepted += sum(v.status == "accepted" for v in verdicts)
            if stopped:
                await asyncio.sleep(max(0.0, outage - (time.monotonic() - stopped)))
                lag = await forward_lag(pool)
                waiting = await pool.fetchval("SELECT count(*) FROM member_events WHERE member_id = ANY($1::text[])"
                                              " AND forwarded_at IS NULL", ids)
                log(f"all {accepted} events accepted; {waiting} wait, the oldest {lag or 0:.0f} s; starting Temporal")
                server = await start()
                restarted = time.monotonic()

            async def caught_up() -> bool:
                return await pool.fetchval("SELECT count(*) FROM members WHERE member_id = ANY($1::text[])"
                                           " AND purchase_count >= 4", ids) >= members

            await wait_until(caught_up, 600, interval=0.5, what="every member to fold its events")
            catch_up = time.monotonic() - restarted if restarted else 0.0
            loop.cancel()
    finally:
        await server.stop()
    counts = await pool.fetchrow(
        "SELECT count(*) AS logged, count(*) FILTER (WHERE forwarded_at IS NULL) AS unforwarded"
        " FROM member_events WHERE member_id = ANY($1::text[])", ids)
    done = await pool.fetchval("SELECT count(*) FROM members WHERE member_id = ANY($1::text[])"
                               " AND purchase_count >= 4", ids)
    return OutageResult(
        members=members, events=len(stream), accepted=accepted, logged=counts["logged"],
        forwarded=sum(r.forwarded for r in forwarding.rounds), unforwarded=counts["unforwarded"],
        caught_up=done, waiting_rounds=sum(1 for r in forwarding.rounds if r.waiting), waiting_at_restart=waiting,
        outage_seconds=(restarted - stopped) if stopped else 0.0, catch_up_seconds=catch_up,
    )


def report(result: OutageResult) -> str:
    return "\n".join([
        f"== faults: Temporal down for {result.outage_seconds:.0f} s during a stream of {result.members} members ==",
        f"events sent            {result.events}",
        f"accepted (2xx)         {result.accepted}",
        f"in the event log       {result.logged}   lost: {result.lost}",
        f"forwarded (signals)    {result.forwarded}   duplicates: {result.duplicates}   still waiting: {result.unforwarded}",
        f"waiting at the restart {result.waiting_at_restart} events (rounds that found Temporal down: {result.waiting_rounds})",
        f"members caught up      {result.caught_up} of {result.members}, {result.catch_up_seconds:.1f} s after the restart",
        "OK" if result.ok() else "FAILED",
    ])


async def main(members: int, outage: float) -> int:
    stack = Stack()
    try:
        result = await measure(stack, members, outage)
    finally:
        await stack.close()
    print(report(result), flush=True)
    return 0 if result.ok() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds Temporal stays down")
    args = parser.parse_args()
    quiet_logging()
    code = asyncio.run(main(args.members, args.outage))
    sys.stdout.flush()
    os._exit(code)  # the SDK's native threads can abort a finalising interpreter (sdk-python#300)
