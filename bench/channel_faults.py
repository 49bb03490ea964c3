"""``make faults``: first touches through LINE, email and SMS while the vendors fail and the worker is killed.

The dev server, an embedded PostgreSQL, the three stand-ins (``worker/standins``: LINE's
Messaging API, an SMTP server, an SMS gateway; each counts what it received per key) and
the real worker — ``goldenroute worker`` in a child process, its senders pointed at the
stand-ins by its environment, with the shop's configuration applied so that S01's welcome
offer after a sample request goes out at once. Three waves of members, through the ingress:

1. the storm: ``--members`` first touches, half on LINE, 3 in 10 by email, 2 in 10 by
   SMS, while the stand-ins deal faults at random (500s, 429s with Retry-After, answers
   after the sender's timeout, lost answers; on SMTP 451s and dropped connections; a few
   refusals for good). Once about half are sent, a few sends of each channel are held in
   flight and the worker is killed with SIGKILL; a new one is started. Every touch must
   end with one message per key on LINE, at most one on SMTP and SMS, and none silently
   lost: a touch sent has the vendor's copy, or is ``failed`` / ``uncertain`` for an operator.
2. half as many members, no faults: email's send latency (decided → sent);
3. as many again with LINE down for ``--outage`` seconds: email's latency beside (2).
   LINE's sends run on their own task queue, so email need not wait for LINE.

The exit status is the exactly-once checks (and every send settled); the latencies are figures.

    python -m bench.channel_faults [--members 1000] [--outage 60] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from temporalio.client import Client

from activities.senders.line import retry_key
from activities.senders.mail import message_id
from activities.senders.sms import client_ref
from activities.shop_versions import apply
from bench.channel_storm import (NETWORK, DicedFaults, DicedSmtpFaults, WorkerProcess, at_once_shop, channel_of,
                                 line_dice, sms_dice, smtp_dice, start_members)
from bench.common import Stack, exit_with, table
from worker.standins.line import LineStandIn
from worker.standins.sms import SmsGatewayStandIn
from worker.standins.smtp import SmtpStandIn
from workflows.events import Channel

LINE_TOKEN, SMS_TOKEN = "bench-line-token", "bench-sms-token"
SETTLE = 300.0  # seconds a wave may take to settle
IN_FLIGHT = 3  # sends per channel held in flight when the worker is killed
STATES = ("sent", "failed", "uncertain", "queued", "sending")

# Every touch of these members decided as sent on a network channel, and its delivery.
_SENDS = """
SELECT t.idempotency_key AS key, t.channel, t.decided_at, d.state, d.sent_at
FROM touches t LEFT JOIN deliveries d USING (idempotency_key)
WHERE t.member_id = ANY($1::text[]) AND t.channel = ANY($2::text[])
  AND (t.outcome = 'sent' OR d.idempotency_key IS NOT NULL)
"""
_UNSETTLED = """
SELECT (SELECT count(*) FROM touches WHERE member_id = ANY($1::text[]) AND scenario = 'S01'
          AND step = 'welcome_offer') AS decided,
       (SELECT count(*) FROM deliveries WHERE member_id = ANY($1::text[]) AND channel = ANY($2::text[])
          AND state IN ('queued', 'sending')) AS open,
       (SELECT count(*) FROM touches t JOIN deliveries d USING (idempotency_key)
          WHERE t.member_id = ANY($1::text[]) AND d.state = 'failed' AND t.outcome = 'sent') AS unrecorded
"""
_NETWORK = [c.value for c in NETWORK]


@dataclass
class Standins:
    line: LineStandIn
    smtp: SmtpStandIn
    sms: SmsGatewayStandIn
    mail_domain: str  # of the shop's sender: the Message-ID's right-hand side

    def copies(self, channel: Channel, key: str) -> int:
        """How many messages of this touch the vendor took."""
        if channel is Channel.LINE:
            return len(self.line.deliveries_for(retry_key(key)))
        if channel is Channel.EMAIL:
            return self.smtp.deliveries[message_id(key, self.mail_domain)]
        return self.sms.deliveries(client_ref(key))

    def faults(self, channel: Channel):
        return {Channel.LINE: self.line.faults, Channel.EMAIL: self.smtp.faults, Channel.SMS: self.sms.faults}[channel]


@dataclass
class ChannelFigures:
    touches: int = 0  # decided as sent on this channel
    states: Counter = field(default_factory=Counter)  # of their deliveries (``none``: no delivery row)
    copies: Counter = field(default_factory=Counter)  # messages at the vendor per touch → touches
    lost: int = 0  # no copy at the vendor, and neither failed nor uncertain
    bad_line: int = 0  # LINE: sent, but not exactly one push
    faults: Counter = field(default_factory=Counter)  # dealt by the stand-in's dice

    @property
    def at_vendor(self) -> int:
        return sum(n * touches for n, touches in self.copies.items())

    @property
    def max_copies(self) -> int:
        return max((n for n, touches in self.copies.items() if touches), default=0)

    @property
    def repeated(self) -> int:
        return sum(touches for n, touches in self.copies.items() if n > 1)


@dataclass
class Kill:
    sent_before: int = 0
    in_flight: dict[str, Channel] = field(default_factory=dict)  # key → channel: 'sending' at the kill
    restart_seconds: float = 0.0
    ends: dict[Channel, Counter] = field(default_factory=dict)  # (final state, copies) of those → touches


@dataclass
class Wave:
    members: int
    email: list[float]  # decided → sent, seconds
    line: list[float]
    email_sent_after: list[float]  # seconds from the wave's start

    def email_within(self, seconds: float) -> int:
        return sum(1 for s in self.email_sent_after if s <= seconds)


@dataclass
class Result:
    members: int
    outage_seconds: float
    storm: dict[Channel, ChannelFigures]
    after: dict[Channel, ChannelFigures]  # the two latency waves
    kill: Kill
    baseline: Wave
    outage: Wave
    settled: bool
    storm_seconds: float = 0.0  # from the storm's start until every send had its result

    @property
    def problems(self) -> list[str]:
        found = [] if self.settled else ["not every send had its result in time"]
        for wave, figures in (("storm", self.storm), ("latency waves", self.after)):
            for channel, f in figures.items():
                if f.bad_line:
                    found.append(f"{wave}, line: {f.bad_line} touches sent without exactly one push")
                if f.repeated and channel is not Channel.LINE:
                    found.append(f"{wave}, {channel.value}: {f.repeated} touches reached the vendor more than once")
                if f.lost:
                    found.append(f"{wave}, {channel.value}: {f.lost} touches silently lost")
        return found

    def ok(self) -> bool:
        return not self.problems


async def figures(pool: asyncpg.Pool, standins: Standins, ids: list[str]) -> dict[Channel, ChannelFigures]:
    found = {channel: ChannelFigures(faults=Counter(standins.faults(channel).dice.dealt)) for channel in NETWORK}
    for row in await pool.fetch(_SENDS, ids, _NETWORK):
        channel = Channel(row["channel"])
        counts, copies = found[channel], standins.copies(channel, row["key"])
        counts.touches += 1
        counts.states[row["state"] or "none"] += 1
        counts.copies[copies] += 1
        counts.lost += copies == 0 and row["state"] not in ("failed", "uncertain")
        counts.bad_line += channel is Channel.LINE and (copies > 1 or (row["state"] == "sent" and copies != 1))
    return found


async def until(check, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


async def settle(pool: asyncpg.Pool, ids: list[str]) -> bool:
    """Until every member's first touch is decided and every send has its result."""
    async def settled() -> bool:
        row = await pool.fetchrow(_UNSETTLED, ids, _NETWORK)
        return row["decided"] >= len(ids) and not row["open"] and not row["unrecorded"]

    return await until(settled, SETTLE, 0.5)


async def sent(pool: asyncpg.Pool, ids: list[str]) -> int:
    return await pool.fetchval("SELECT count(*) FROM deliveries WHERE member_id = ANY($1::text[])"
                               " AND channel = ANY($2::text[]) AND state = 'sent'", ids, _NETWORK)


def members_of(run: str, wave: str, size: int) -> dict[str, Channel]:
    return {f"cf-{run}-{wave}{n:05d}": channel_of(n) for n in range(size)}


class Run:
    """One run's stand-ins, task queue and worker processes."""

    def __init__(self, pool: asyncpg.Pool, client: Client, standins: Standins, env: dict[str, str], home: Path,
                 task_queue: str, log) -> None:
        self.pool, self.client, self.standins, self.env, self.home = pool, client, standins, env, home
        self.task_queue, self.log = task_queue, log
        self.workers: list[WorkerProcess] = []

    async def new_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.home / f"{self.task_queue}-worker-{len(self.workers) + 1}.log")
        self.workers.append(worker)
        await worker.start()
        return worker

    async def start(self, members: dict[str, Channel]) -> None:
        await start_members(self.pool, self.client, self.task_queue, members, datetime.now(timezone.utc))

    async def storm(self, members: dict[str, Channel]) -> Kill:
        """Faults at random; SIGKILL once about half the sends are done, with some in flight."""
        ids, kill, standins = list(members), Kill(), self.standins
        worker = await self.new_worker()
        starting = asyncio.create_task(self.start(members))
        try:
            async def half_sent() -> bool:
                return await sent(self.pool, ids) >= len(ids) // 2

            if not await until(half_sent, SETTLE):
                raise TimeoutError(f"fewer than half of {len(ids)} sends in {SETTLE:.0f} s")
            # Answered after the sender's timeout, the message taken: sends the kill interrupts.
            standins.line.faults.slow(IN_FLIGHT, seconds=30)
            standins.sms.faults.slow(IN_FLIGHT, seconds=30)
            standins.smtp.faults.slow(IN_FLIGHT, seconds=30, stored=True)
            expected = Counter(members.values())

            async def taken() -> bool:  # by a send, or there is none left to send on that channel
                done = dict(await self.pool.fetch(
                    "SELECT channel, count(*) FROM deliveries WHERE member_id = ANY($1::text[])"
                    " AND state IN ('sent', 'failed', 'uncertain') GROUP BY channel", ids))
                return all(len(standins.faults(c)) == 0 or done.get(c.value, 0) >= expected[c] for c in NETWORK)

            await until(taken, 5.0, 0.05)
            await asyncio.sleep(0.3)  # the last of them reach the vendor
            for channel in NETWORK:
                standins.faults(channel).clear()
            kill.sent_before = await sent(self.pool, ids)
            worker.kill()
            rows = await self.pool.fetch("SELECT idempotency_key, channel FROM deliveries"
                                         " WHERE member_id = ANY($1::text[]) AND state = 'sending'", ids)
            kill.in_flight = {r["idempotency_key"]: Channel(r["channel"]) for r in rows}
            self.log(f"kill -9 after {kill.sent_before} of {len(ids)} sends, {len(rows)} in flight")
            began = time.monotonic()
            await self.new_worker()
            kill.restart_seconds = time.monotonic() - began
            await starting
        finally:
            starting.cancel()
        return kill

    async def kill_ends(self, kill: Kill) -> None:
        """What became of the sends the kill interrupted."""
        states = {r["idempotency_key"]: r["state"] for r in await self.pool.fetch(
            "SELECT idempotency_key, state FROM deliveries WHERE idempotency_key = ANY($1::text[])",
            list(kill.in_flight))}
        for key, channel in kill.in_flight.items():
            kill.ends.setdefault(channel, Counter())[(states.get(key, "none"), self.standins.copies(channel, key))] += 1

    async def wave(self, members: dict[str, Channel], started: datetime) -> Wave:
        rows = await self.pool.fetch(_SENDS, list(members), _NETWORK)
        sent_rows = [r for r in rows if r["state"] == "sent"]
        latency = {c: [(r["sent_at"] - r["decided_at"]).total_seconds() for r in sent_rows if r["channel"] == c.value]
                   for c in (Channel.EMAIL, Channel.LINE)}
        after = [(r["sent_at"] - started).total_seconds() for r in sent_rows if r["channel"] == Channel.EMAIL.value]
        return Wave(len(members), latency[Channel.EMAIL], latency[Channel.LINE], after)


async def measure(pool: asyncpg.Pool, database_url: str, client: Client, temporal_address: str, home: Path, *,
                  members: int, wave_size: int, outage: float, fault_scale: float = 1.0, log=print) -> Result:
    """The whole run against this database and Temporal server; ``home`` keeps the workers' logs."""
    began = time.monotonic()
    progress = lambda line: log(f"{time.monotonic() - began:6.1f} s  {line}")  # noqa: E731
    name = uuid.uuid4().hex[:6]
    shop = at_once_shop()
    version, _ = await apply(pool, shop, timedelta(seconds=1), note="bench.channel_faults: at once")
    await asyncio.sleep(max(0.0, (version.effective_at - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    async with LineStandIn(LINE_TOKEN) as line, SmtpStandIn() as smtp, SmsGatewayStandIn(SMS_TOKEN) as sms:
        line.faults = DicedFaults(line_dice(1, fault_scale))
        smtp.faults = DicedSmtpFaults(smtp_dice(2, fault_scale))
        sms.faults = DicedFaults(sms_dice(3, fault_scale))
        standins = Standins(line, smtp, sms, mail_domain=shop.config.shop.sender.email.rpartition("@")[2])
        task_queue = f"channel-faults-{name}"
        env = WorkerProcess.environment(temporal_address=temporal_address, database_url=database_url,
                                        task_queue=task_queue, line_url=line.url, line_token=LINE_TOKEN,
                                        smtp_url=smtp.url, sms_url=sms.url, sms_token=SMS_TOKEN)
        run = Run(pool, client, standins, env, home, task_queue, progress)
        try:
            progress(f"storm: {members} members, the vendors failing at random")
            stormy = members_of(name, "a", members)
            storm_began = time.monotonic()
            kill = await run.storm(stormy)
            settled = await settle(pool, list(stormy))
            storm_seconds = time.monotonic() - storm_began
            for channel in NETWORK:
                standins.faults(channel).dice.enabled = False
            storm = await figures(pool, standins, list(stormy))
            await run.kill_ends(kill)

            progress(f"no faults: {wave_size} members")
            quiet, started = members_of(name, "b", wave_size), datetime.now(timezone.utc)
            await run.start(quiet)
            settled = await settle(pool, list(quiet)) and settled
            baseline = await run.wave(quiet, started)

            progress(f"LINE down for {outage:.0f} s: {wave_size} members")
            down, started, line.outage = time.monotonic(), datetime.now(timezone.utc), True
            dark = members_of(name, "c", wave_size)
            await run.start(dark)
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - down)))
            line.outage, outage_seconds = False, time.monotonic() - down
            settled = await settle(pool, list(dark)) and settled
            during = await run.wave(dark, started)
            after = await figures(pool, standins, [*quiet, *dark])
            progress("settled")
        finally:
            for worker in run.workers:
                await worker.stop()
    for channel in NETWORK:
        after[channel].faults.clear()  # dealt during the storm
    return Result(members, outage_seconds, storm, after, kill, baseline, during, settled, storm_seconds)


HEADER = ["channel", "touches", *STATES, "at vendor", "max/key", "keys >1", "silently lost"]


def _rows(figures: dict[Channel, ChannelFigures]) -> list[list[object]]:
    return [[c.value, f.touches, *(f.states[s] for s in STATES), f.at_vendor, f.max_copies, f.repeated, f.lost]
            for c, f in figures.items()]


def _kill_lines(kill: Kill) -> list[str]:
    in_flight = Counter(kill.in_flight.values())
    ends = "; ".join(f"{c.value}: " + ", ".join(f"{n} {state} with {copies} at the vendor"
                                               for (state, copies), n in sorted(kill.ends[c].items()))
                     for c in NETWORK if c in kill.ends)
    return [f"kill -9: after {kill.sent_before} sends, {len(kill.in_flight)} in flight ("
            + ", ".join(f"{c.value} {in_flight[c]}" for c in NETWORK)
            + f"); a new worker polled {kill.restart_seconds:.1f} s later",
            f"  the sends in flight ended: {ends or '-'}"]


def _latency_lines(base: Wave, out: Wave, span: float) -> list[str]:
    q = _quantile
    rows = [[name, w.members, len(w.email), f"{q(w.email, .5):.2f} s", f"{q(w.email, .95):.2f} s",
             f"{w.email_within(span)} of {len(w.email)}", f"{q(w.line, .5):.2f} s"]
            for name, w in (("no faults", base), (f"LINE down {span:.0f} s", out))]
    return [f"== email's send latency (decided → sent), without faults and with LINE down for {span:.0f} s ==",
            table(rows, ["wave", "members", "emails", "email p50", "email p95", f"sent within {span:.0f} s",
                         "LINE p50"]),
            f"with LINE down / without: email p50 {q(out.email, .5) / q(base.email, .5):.2f}×,"
            f" p95 {q(out.email, .95) / q(base.email, .95):.2f}×"]


def report(result: Result) -> str:
    return "\n".join([
        f"== channel faults: {result.members} members' first touches; the vendors fail at random;"
        " the worker is killed -9 midway ==",
        "faults dealt at random (and LINE refuses 1 member in 100 on every attempt: an id it never issued):",
        *(f"  {c.value:<6} " + (", ".join(f"{label} ×{n}" for label, n in f.faults.most_common()) or "none")
          for c, f in result.storm.items()),
        *_kill_lines(result.kill),
        f"every send had its result {result.storm_seconds:.0f} s after the storm began" if result.settled
        else "NOT every send had its result in time",
        "",
        table(_rows(result.storm), HEADER),
        "",
        *_latency_lines(result.baseline, result.outage, result.outage_seconds),
        "the two waves, exactly once:",
        table(_rows(result.after), HEADER),
        "",
        "OK" if result.ok() else "FAILED: " + "; ".join(result.problems),
    ])


def _quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def main(members: int, outage: float) -> int:
    stack = Stack()
    try:
        pool = await stack.database("channel_faults")
        url = stack.database_urls[pool]  # the worker process connects itself
        env = await stack.dev_server()
        result = await measure(pool, url, env.client, env.client.service_client.config.target_host, stack.home,
                               members=members, wave_size=max(20, members // 2), outage=outage,
                               log=lambda line: print(line, flush=True))
    finally:
        await stack.close()
    print(report(result), flush=True)
    return 0 if result.ok() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=None, help="members in the storm (1000; --quick: 200)")
    parser.add_argument("--outage", type=float, default=None, help="seconds LINE is down (60; --quick: 20)")
    parser.add_argument("--quick", action="store_true", help="200 members, LINE down for 20 s")
    args = parser.parse_args()
    exit_with(main(args.members or (200 if args.quick else 1000), args.outage or (20.0 if args.quick else 60.0)))
