"""``make faults``: scale out — two worker processes on one task queue, one killed -9 in a storm.

Issue 14 ("Also"): two ``goldenroute worker`` processes (the real worker, production
activities, an embedded PostgreSQL, the dev server) poll one task queue. A storm of
``--members`` members (1,000; ``--quick`` 200) comes through the ingress as an order system
sends it: each member's registration (reachable on LINE, email or SMS, as
``bench.channel_faults`` routes them) and a sample request, accepted into the event log
(contacts stored, stripped), then forwarded, one signal-with-start per event. Under the
shop configuration ``bench.channel_storm.at_once_shop`` applies, every member's first touch
— S01's welcome offer — is due at once, so each member also costs a send through the
LINE, SMTP and SMS stand-ins (no faults dealt: the kill is the fault). Once half the
members' sends are done, one worker is killed with SIGKILL; the other finishes alone.

Printed: members, events, lost (accepted events missing from ``member_events``; members
whose snapshot lacks an event: no ``members`` row with the registration, or no decided
welcome offer for the sample request; touches sent with no message at the vendor and
neither failed nor uncertain), duplicates (signals beyond one per event; keys with more
than one message at a stand-in; LINE touches sent without exactly one push), and CPU
milliseconds per event of each worker process, of this process (the ingress and the
forwarder), of the Temporal server and of PostgreSQL (psutil). The exit status is 0 only
with nothing lost and no duplicate.

Why ``make faults`` and not ``make bench``: a workflow task or activity the killed worker
held is retried only once its timeout has run out (a send's start-to-close: 30 s), so the
run takes at least that long after the kill, whatever its size — past ``make bench
--quick``'s minute. For the same reason ``tests/test_bench_smoke.py`` has no small version;
``tests/test_channel_faults_small.py`` kills the same worker with sends in flight.

    python -m bench.scale_out [--members 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psutil

from activities.shop_versions import apply
from bench.channel_faults import LINE_TOKEN, SMS_TOKEN, Standins, figures, members_of, sent, settle
from bench.channel_storm import Dice, DicedFaults, DicedSmtpFaults, WorkerProcess, at_once_shop, first_touch
from bench.common import CpuMeter, Stack, exit_with, table
from starter.ingress.forwarder import Forwarder, ForwardResult
from starter.ingress.log import accept
from worker.standins.line import LineStandIn
from worker.standins.sms import SmsGatewayStandIn
from worker.standins.smtp import SmtpStandIn
from workflows.events import Channel

MEMBERS, QUICK_MEMBERS = 1000, 200
WORKERS = 2
BATCH = 1000  # events per accept, as the HTTP ingress's batch limit
# The sends are not what is measured: limits high enough that the channels do not pace the storm.
RATES = "line=500,email=500,sms=500"
CONCURRENCY = "line=50,email=50,sms=50"

_SNAPSHOTS = """
SELECT count(*) FILTER (WHERE m.member_id IS NULL OR m.registered_at IS NULL) AS no_registration,
       count(*) FILTER (WHERE t.idempotency_key IS NULL) AS no_welcome
FROM unnest($1::text[]) AS ids(member_id)
LEFT JOIN members m USING (member_id)
LEFT JOIN touches t ON t.member_id = ids.member_id AND t.scenario = 'S01' AND t.step = 'welcome_offer'
"""


@dataclass
class Proc:
    """CPU seconds of one process, read until it ends (a killed one keeps its last reading)."""

    label: str
    pid: int
    cpu: float = 0.0
    start: float | None = None
    at_kill: float = 0.0  # CPU seconds until the kill

    def sample(self) -> None:
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return
        seconds = times.user + times.system
        if self.start is None:
            self.start = seconds
        self.cpu = seconds - self.start


@dataclass
class ScaleOutResult:
    members: int
    events: int
    accepted: int
    logged: int
    forwarded: int  # signals the forwarder's rounds took
    unforwarded: int
    no_registration: int  # members whose snapshot lacks their registration
    no_welcome: int  # members whose sample request led to no decided welcome offer
    channels: dict  # Channel -> bench.channel_faults.ChannelFigures
    kill_after: int  # sends done when the worker was killed
    killed_at: float  # seconds into the storm
    storm_seconds: float  # until every member settled
    settled: bool
    cpu: list[tuple[str, float, float]] = field(default_factory=list)  # (process, CPU s in all, CPU s until the kill)

    @property
    def lost_events(self) -> int:
        return self.accepted - self.logged

    @property
    def lost_sends(self) -> int:
        return sum(f.lost for f in self.channels.values())

    @property
    def lost(self) -> int:
        return self.lost_events + self.unforwarded + self.no_registration + self.no_welcome + self.lost_sends

    @property
    def duplicate_signals(self) -> int:
        return self.forwarded - self.accepted

    @property
    def duplicate_sends(self) -> int:
        return sum(f.repeated + (f.bad_line if c is Channel.LINE else 0) for c, f in self.channels.items())

    @property
    def duplicates(self) -> int:
        return self.duplicate_signals + self.duplicate_sends

    def ok(self) -> bool:
        return self.settled and self.lost == 0 and self.duplicates == 0 and self.accepted == self.events


async def measure(stack: Stack, members: int, log=print) -> ScaleOutResult:
    pool = await stack.database("scale_out")
    database_url = stack.database_urls[pool]
    env = await stack.dev_server()
    client = env.client
    shop = at_once_shop()
    version, _ = await apply(pool, shop, timedelta(seconds=1), note="bench.scale_out: at once")
    await asyncio.sleep(max(0.0, (version.effective_at - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    name = uuid.uuid4().hex[:6]
    task_queue = f"scale-out-{name}"
    began = time.monotonic()
    progress = lambda line: log(f"{time.monotonic() - began:6.1f} s  {line}")  # noqa: E731
    async with LineStandIn(LINE_TOKEN) as line, SmtpStandIn() as smtp, SmsGatewayStandIn(SMS_TOKEN) as sms:
        line.faults = DicedFaults(Dice(1, []))
        smtp.faults = DicedSmtpFaults(Dice(2, []))
        sms.faults = DicedFaults(Dice(3, []))
        standins = Standins(line, smtp, sms, mail_domain=shop.config.shop.sender.email.rpartition("@")[2])
        environment = WorkerProcess.environment(
            temporal_address=client.service_client.config.target_host, database_url=database_url,
            task_queue=task_queue, line_url=line.url, line_token=LINE_TOKEN, smtp_url=smtp.url, sms_url=sms.url,
            sms_token=SMS_TOKEN) | {"CHANNEL_RATES": RATES, "CHANNEL_CONCURRENCY": CONCURRENCY,
                                    "MAX_CACHED_WORKFLOWS": str(max(2000, members))}
        workers = [WorkerProcess(environment, stack.home / f"{task_queue}-worker-{n + 1}.log")
                   for n in range(WORKERS)]
        try:
            await asyncio.gather(*(w.start() for w in workers))
            procs = [Proc(f"worker {n + 1}" + (" (killed)" if n == 0 else ""), w.process.pid)
                     for n, w in enumerate(workers)]
            for proc in procs:
                proc.sample()
            progress(f"{WORKERS} workers polling {task_queue}; storm of {members} members")
            result = await _storm(pool, client, task_queue, standins, workers, procs, members, name, progress)
        finally:
            for worker in workers:
                await worker.stop()
    return result


async def _storm(pool, client, task_queue: str, standins: Standins, workers: list[WorkerProcess],
                 procs: list[Proc], members: int, name: str, progress) -> ScaleOutResult:
    routed = members_of(name, "s", members)
    ids = list(routed)
    now = datetime.now(timezone.utc)
    events = [e for n, (m, channel) in enumerate(routed.items()) for e in first_touch(m, n, channel, now)]
    cpu = CpuMeter()
    started = time.monotonic()
    rounds: list[ForwardResult] = []
    accepted = 0
    for start in range(0, len(events), BATCH):
        verdicts = await accept(pool, list(enumerate(events[start:start + BATCH], start=1)), source="scale-out")
        accepted += sum(v.status == "accepted" for v in verdicts)
    forwarder = Forwarder(pool, client, task_queue)

    async def forwarding() -> None:
        while True:
            rounds.append(await forwarder.forward_pending(ids))
            if not rounds[-1].members:
                await asyncio.sleep(0.2)

    async def sampling() -> None:
        while True:
            for proc in procs:
                proc.sample()
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(forwarding()), asyncio.create_task(sampling())]
    try:
        while (done := await sent(pool, ids)) < members // 2:
            if time.monotonic() - started > 300:
                raise TimeoutError(f"fewer than half of {members} sends in 300 s")
            await asyncio.sleep(0.05)
        for proc in procs:
            proc.sample()
            proc.at_kill = proc.cpu
        at_kill = cpu.read()
        workers[0].kill()
        killed_at = time.monotonic() - started
        progress(f"kill -9 worker 1 after {done} of {members} sends; worker 2 goes on alone")
        settled = await settle(pool, ids)
        storm_seconds = time.monotonic() - started
        progress("settled" if settled else "NOT settled in time")
    finally:
        for task in tasks:
            task.cancel()
    for proc in procs[1:]:
        proc.sample()
    used = cpu.read()
    counts = await pool.fetchrow(
        "SELECT count(*) AS logged, count(*) FILTER (WHERE forwarded_at IS NULL) AS unforwarded"
        " FROM member_events WHERE member_id = ANY($1::text[])", ids)
    snapshots = await pool.fetchrow(_SNAPSHOTS, ids)
    channels = await figures(pool, standins, ids)
    return ScaleOutResult(
        members=members, events=len(events), accepted=accepted, logged=counts["logged"],
        forwarded=sum(r.forwarded for r in rounds), unforwarded=counts["unforwarded"],
        no_registration=snapshots["no_registration"], no_welcome=snapshots["no_welcome"], channels=channels,
        kill_after=done, killed_at=killed_at, storm_seconds=storm_seconds, settled=settled,
        cpu=[*((p.label, p.cpu, p.at_kill) for p in procs),
             *((label, used[kind], at_kill[kind]) for label, kind in (
                 ("this process (ingress + forwarder)", "python"), ("Temporal dev server", "temporal"),
                 ("PostgreSQL", "postgres")))],
    )


def report(result: ScaleOutResult) -> str:
    r = result
    sends = table([[c.value, f.touches, f.states["sent"], f.states["failed"], f.states["uncertain"], f.at_vendor,
                    f.repeated, f.lost] for c, f in r.channels.items()],
                  ["channel", "touches sent", "delivered", "failed", "uncertain", "at vendor", "keys >1", "lost"])
    cpu = table([[label, f"{seconds:.1f}", f"{seconds * 1000 / r.events:.2f}", f"{before:.1f}",
                  f"{seconds - before:.1f}"] for label, seconds, before in r.cpu],
                ["process", "CPU s", "CPU ms/event", "CPU s until the kill", "CPU s after it"])
    return "\n".join([
        f"== scale out: {WORKERS} worker processes on one task queue, {r.members} members, worker 1 killed -9 "
        f"half-way ==",
        f"members                {r.members}   events {r.events} (registration + sample request each)",
        f"kill -9 worker 1       after {r.kill_after} of {r.members} sends, {r.killed_at:.1f} s into the storm; "
        f"every member settled {r.storm_seconds:.1f} s after it began" if r.settled
        else f"kill -9 worker 1       after {r.kill_after} sends; NOT every member settled in time",
        f"accepted / in the log  {r.accepted} / {r.logged}   lost events: {r.lost_events}; "
        f"never forwarded: {r.unforwarded}",
        f"snapshots              lacking the registration: {r.no_registration}; "
        f"lacking the sample request (no welcome offer decided): {r.no_welcome}",
        f"signals                {r.forwarded} for {r.accepted} events   duplicates: {r.duplicate_signals}",
        sends,
        f"lost: {r.lost}   duplicates: {r.duplicates} (signals {r.duplicate_signals}, "
        f"sends {r.duplicate_sends})",
        f"CPU per event ({r.events} events, the whole storm; the killed worker until its kill; after the kill "
        f"the survivor and the server also wait out the killed worker's timeouts):",
        cpu,
        "OK" if r.ok() else "FAILED",
    ])


async def main(members: int) -> int:
    stack = Stack()
    try:
        result = await measure(stack, members, log=lambda line: print(line, flush=True))
    finally:
        await stack.close()
    print(report(result), flush=True)
    return 0 if result.ok() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=None, help=f"members in the storm ({MEMBERS}; --quick: "
                                                                  f"{QUICK_MEMBERS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MEMBERS} members")
    args = parser.parse_args()
    exit_with(main(args.members or (QUICK_MEMBERS if args.quick else MEMBERS)))
