"""What ``bench.channel_faults`` drives: members whose first touch is due at once, the
shop configuration that makes it so, faults dealt at random by the stand-ins, and the
worker as an operator runs it (``goldenroute worker``) in a child process that can be
killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from temporalio.client import Client

from bench.common import ROOT
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import accept
from worker.senders import SMTP_TIMEOUT
from worker.settings import setting_names
from worker.shop_config import LoadedShop, parse_shop_config
from worker.standins.http_server import Fault, Faults
from worker.standins.smtp import SmtpFault, SmtpFaults
from workflows.events import Channel, MemberEvent, parse_event

NETWORK = (Channel.LINE, Channel.EMAIL, Channel.SMS)
# The senders' own timeouts (LineSender and SmsGatewaySender: 10 s; SMTP: SMTP_TIMEOUT):
# a "slow" answer comes after the sender has given up, the message already taken.
SLOW = {Channel.LINE: 12.0, Channel.SMS: 12.0, Channel.EMAIL: SMTP_TIMEOUT + 5}
REFUSED_BY_LINE = 3  # member n with n % 100 == 3: a LINE id LINE refuses (400), on every attempt


# --- the members -----------------------------------------------------------------------------


def channel_of(n: int) -> Channel:
    """Half on LINE (a LINE id, consent, and an email address too), 3 in 10 email, 2 in 10 SMS."""
    return Channel.LINE if n % 10 < 5 else Channel.EMAIL if n % 10 < 8 else Channel.SMS


def first_touch(member_id: str, n: int, channel: Channel, now: datetime) -> list[MemberEvent]:
    """A registration reachable on ``channel`` (policy.route picks it) and a sample request:
    S01's welcome offer is due at once."""
    contact: dict[str, str] = {}
    if channel is Channel.LINE:
        # One in a hundred has an id LINE never issues (33 digits): LINE refuses each push to it.
        digits = 33 if n % 100 == REFUSED_BY_LINE else 32
        contact["line_user_id"] = "U" + hashlib.sha256(member_id.encode()).hexdigest()[:digits]
    if channel in (Channel.LINE, Channel.EMAIL):
        contact["email"] = f"{member_id}@example.jp"
    if channel is Channel.SMS:
        contact["phone"] = f"090-{n // 10_000 % 10_000:04d}-{n % 10_000:04d}"
    consent = {"email": "email" in contact, "line": "line_user_id" in contact, "sms": "phone" in contact,
               "push": False, "dm": False}
    common = {"member_id": member_id}
    return [
        parse_event({**common, "type": "member_registered", "event_id": f"{member_id}-reg",
                     "occurred_at": (now - timedelta(minutes=1)).isoformat(), "sales_channel": "online",
                     "consent": consent, "contact": contact}),
        parse_event({**common, "type": "sample_requested", "event_id": f"{member_id}-smp",
                     "occurred_at": now.isoformat(), "order_id": f"SMP-{member_id}", "sku": "KOSO-SAMPLE-7",
                     "days_supply": 7}),
    ]


async def start_members(pool: asyncpg.Pool, client: Client, task_queue: str, members: dict[str, Channel],
                        now: datetime) -> None:
    """Through the ingress, as an order system would: accepted into the event log (contacts
    stored, stripped from the events), then forwarded, one signal-with-start per event."""
    events = [e for n, (m, channel) in enumerate(members.items()) for e in first_touch(m, n, channel, now)]
    for start in range(0, len(events), 1000):
        await accept(pool, list(enumerate(events[start:start + 1000], start=1)), source="channel-faults")
    forwarder = Forwarder(pool, client, task_queue)
    for _ in range(10):  # a round leaves an event only when Temporal refused it
        if not (await forwarder.forward_pending(list(members))).members:
            return
    raise RuntimeError("the forwarder could not forward every event in 10 rounds")


def at_once_shop() -> LoadedShop:
    """The example shop with every touch due at once going out at once (no grace period, no
    holdout) and LINE and SMS allowed at any hour, so a run's first touches go out now."""
    text = (ROOT / "examples" / "shop.toml").read_text(encoding="utf-8")
    for old, new in (("holdout_percent = 10", "holdout_percent = 0"), ("grace_minutes = 10", "grace_minutes = 0"),
                     ('allowed_hours = { line = "09:00-21:00", sms = "09:00-21:00", push = "09:00-21:00" }',
                      "allowed_hours = {}")):
        assert old in text, f"examples/shop.toml no longer says {old!r}"
        text = text.replace(old, new, 1)
    return parse_shop_config(text, "examples/shop.toml (at once)", ROOT / "examples")


# --- faults ----------------------------------------------------------------------------------


class Dice:
    """Faults dealt at random, one roll per request: ``table`` is (chance, label, fault); ``scale``
    multiplies every chance (a small run needs more faults to meet each kind)."""

    def __init__(self, seed: int, table: Sequence[tuple[float, str, object]], scale: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.table = [(chance * scale, label, fault) for chance, label, fault in table]
        self.enabled = True
        self.dealt: Counter[str] = Counter()

    def roll(self) -> object | None:
        if not self.enabled:
            return None
        roll = self.rng.random()
        for chance, label, fault in self.table:
            if roll < chance:
                self.dealt[label] += 1
                return fault
            roll -= chance
        return None


class DicedFaults(Faults):
    """An HTTP stand-in's faults: the queued ones first (``slow``, ``error``, …), then the dice."""

    def __init__(self, dice: Dice) -> None:
        super().__init__()
        self.dice = dice

    def take(self) -> Fault | None:
        return super().take() or self.dice.roll()  # type: ignore[return-value]


class DicedSmtpFaults(SmtpFaults):
    def __init__(self, dice: Dice) -> None:
        super().__init__()
        self.dice = dice

    def take(self) -> SmtpFault | None:
        return super().take() or self.dice.roll()  # type: ignore[return-value]


def line_dice(seed: int, scale: float = 1.0) -> Dice:
    return Dice(seed, [
        (0.05, "500", Fault("error", status=500)),
        (0.05, "429 Retry-After: 1", Fault("throttle", status=429, retry_after=1)),
        (0.04, "lost answer", Fault("lost_answer")),
        (0.005, "timeout", Fault("slow", seconds=SLOW[Channel.LINE])),
    ], scale)


# A refusal for good (SMS 422, SMTP 550) is dealt at random only where no attempt the vendor
# may have taken is ever repeated: after one, SMS and SMTP end uncertain. LINE repeats such
# attempts, and would not refuse the same push it had accepted: its refusals come from the
# members' data (REFUSED_BY_LINE), on every attempt.


def sms_dice(seed: int, scale: float = 1.0) -> Dice:
    return Dice(seed, [
        (0.03, "500", Fault("error", status=500)),
        (0.05, "429 Retry-After: 1", Fault("throttle", status=429, retry_after=1)),
        (0.03, "lost answer", Fault("lost_answer")),
        (0.005, "timeout", Fault("slow", seconds=SLOW[Channel.SMS])),
        (0.005, "422", Fault("error", status=422, code="invalid_parameter")),
    ], scale)


def smtp_dice(seed: int, scale: float = 1.0) -> Dice:
    return Dice(seed, [
        (0.06, "451", SmtpFault("reply", code=451, text="4.3.0 Try again later")),
        (0.02, "drop", SmtpFault("drop")),
        (0.02, "drop after queueing", SmtpFault("drop", stored=True)),
        (0.005, "timeout", SmtpFault("slow", seconds=SLOW[Channel.EMAIL], stored=True)),
        (0.005, "550", SmtpFault("reply", code=550, text="5.1.1 Mailbox unavailable", at="rcpt")),
    ], scale)


# --- the worker ------------------------------------------------------------------------------


class WorkerProcess:
    """``goldenroute worker`` in a child process, configured by its environment as in
    production: the senders point at the stand-ins. ``kill()`` is ``kill -9``."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self._env = {k: v for k, v in os.environ.items() if k not in set(setting_names())} | env
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def environment(*, temporal_address: str, database_url: str, task_queue: str, line_url: str, line_token: str,
                    smtp_url: str, sms_url: str, sms_token: str) -> dict[str, str]:
        return {"TEMPORAL_ADDRESS": temporal_address, "DATABASE_URL": database_url, "TASK_QUEUE": task_queue,
                "LINE_API_URL": line_url, "LINE_CHANNEL_ACCESS_TOKEN": line_token, "SMTP_URL": smtp_url,
                "SMS_GATEWAY_URL": sms_url, "SMS_GATEWAY_TOKEN": sms_token, "METRICS_PORT": "0",
                "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}

    async def start(self, timeout: float = 60.0) -> float:
        """Start it; the seconds until it logged ``worker.started`` (it polls from then on)."""
        began = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "starter.cli", "worker"], cwd=ROOT, env=self._env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while b"worker.started" not in self.log_file.read_bytes():
            if self.process.poll() is not None or time.monotonic() - began > timeout:
                tail = self.log_file.read_bytes()[-2000:].decode(errors="replace")
                self.kill()
                raise RuntimeError(f"the worker did not start (log {self.log_file}):\n{tail}")
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as an orchestrator stops it: in-flight sends finish; SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
