"""Record member workflow histories for the replay tests, and summarise recorded ones.

Run after a change that is *meant* to keep running workflows compatible (behind
``workflow.patched``), to add histories of the new behaviour under a new tag; keep
the old tags — they are the members already running. Never re-record a tag to make
a failing replay pass:

    .venv/bin/python -m tests.replay.record_histories v4-ledger            # into tests/replay/histories/
    .venv/bin/python -m tests.replay.record_histories v4-ledger --out /tmp/h  # try it out elsewhere first
    .venv/bin/python -m tests.replay.record_histories --check              # every recorded tag
    .venv/bin/python -m tests.replay.record_histories --check /tmp/h/v4-ledger

A tag may hold some journeys only (``--only JOURNEY``, repeatable): v5 onwards do. The
broadcast journeys of v7 (members that runs of a broadcast reach)::

    .venv/bin/python -m tests.replay.record_histories v7-broadcasts --only weekly_newsletter_sent \
        --only newsletter_at_the_frequency_cap --only newsletter_without_consent \
        --only newsletter_holdout --only newsletter_run_twice

One run of the BroadcastWorkflow itself is recorded apart (``--broadcast``, into
``broadcast_histories/``; see "a broadcast's run" below).

Every journey takes its own start from the test server's clock when it begins (the
next local noon, or the evening for the quiet-hours journey), and its events are
sent at their offsets from that start, so its touches are decided on time instead
of days late (``expired``). After recording, and with ``--check``, each history is
summarised: timers started, activities failed, continue-as-new, and the outcome of
every touch it decided, so a reviewer sees that no journey is mostly ``expired``.

A journey whose member continues-as-new is written as one file per run:
``NAME.json`` (the first run, which ends in continue-as-new), ``NAME.run2.json``, …
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, time as clock, timedelta
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Union

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from worker.converter import DATA_CONVERTER, decompress
from temporalio.testing import WorkflowEnvironment

from activities import db
from tests.conftest import binary
from tests.factories import JST, days, event, order, registered, sample, shipped, subscription
from tests.workflows.helpers import eventually, running_worker, send
from worker.client import register_search_attributes
from worker.devstack import start_embedded_postgres
from starter.broadcasts.runs import start_run
from starter.ingress import signal_with_start
from starter.ingress.log import accept
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, BroadcastProgress, Stage, event_id as broadcast_event_id
from workflows.segments import Segment
from workflows.events import MemberEvent, parse_event
from workflows.member import workflow_id
from workflows import versions
from workflows.policy import PolicyConfig, bucket, in_holdout
from workflows.rules import Rules, ScenarioRules, StepRules
from workflows.versions import Version, VersionBook

HISTORIES = Path(__file__).parent / "histories"
TASK_QUEUE = "replay"

# --- knobs (recorder only) ------------------------------------------------------------------
# The loyal buyer orders every LOYAL_EVERY_DAYS for LOYAL_YEARS: the long-lived member of the
# "new ledger" (F ≥ 40, S08 and S09 firing, orders archived out of the carried state).
LOYAL_YEARS = 5
LOYAL_EVERY_DAYS = 30
# The member workflow continues-as-new when the server suggests it, and nothing else forces
# it. The time-skipping test server suggests it once a run's history passes ~4,096 events
# (observed: the first run ends at 4,100–4,110 events); the 5-year loyal buyer ends at
# ~2,300 (41f006b) to ~3,100 (exact ledger) events. The 定期 subscriber below (monthly
# deliveries, skips, interval changes, pauses) passes the limit in its 9th year on 41f006b
# and its 7th on the exact ledger; it runs CONTINUE_AS_NEW_YEARS so that its second run,
# started from the carried state, fires timers of its own. The recording fails if it does
# not continue-as-new: raise the knob then.
CONTINUE_AS_NEW_YEARS = 10


# --- journeys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutOfBand:
    """Something that happens outside the order systems, e.g. the shop's contact data changes."""

    what: str
    run: Callable[[asyncpg.Pool, str], Awaitable[None]]


@dataclass(frozen=True)
class Again:
    """An event signalled to the member's workflow once more, past the event log: a broadcast's
    page retried after its worker was killed signals what it had not marked forwarded."""

    event: MemberEvent


Step = Union[MemberEvent, OutOfBand, Again]


@dataclass(frozen=True)
class Journey:
    name: str
    about: str
    # (offset in days from the journey's start, event or out-of-band step), built from (member, t0).
    steps: Callable[[str, datetime], list[tuple[float, Step]]]
    run_days: float  # how long the clock runs from the journey's start before its history is fetched
    start: clock = clock(12)  # local time of day the journey starts (Tokyo)
    # The member id is chosen outside the holdout of these scenarios, so their touches are decided
    # ("BC:<broadcast>": the broadcast's own holdout of BROADCAST_HOLDOUT %) …
    not_held_out: tuple[str, ...] = ()
    # … and inside the holdout of these broadcasts ("BC:<broadcast>").
    held_out: tuple[str, ...] = ()
    continues_as_new: bool = False  # the recording fails if the member does not
    # The shop's configuration changes during the journey: (offset in days from its start, rules).
    # The versions stay in force for the journeys after it; the tag's _book.json keeps them all.
    changes: tuple[tuple[float, Rules], ...] = ()
    member: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "member", member_outside_holdout(self.name, self.not_held_out, self.held_out))


def member_outside_holdout(name: str, scenarios: tuple[str, ...], inside: tuple[str, ...] = ()) -> str:
    """A stable member id for the journey (the same on every recording), outside those holdouts
    (and inside those of ``inside``)."""
    base = "replay-" + name.replace("_", "-")
    for n in range(1000):
        member = base if n == 0 else f"{base}-{n}"
        if (not any(_held_out(member, s) for s in scenarios)
                and all(_held_out(member, s) for s in inside)):
            return member
    raise AssertionError(f"no member id for {name} outside the holdout of {scenarios}, inside {inside}")


def _held_out(member: str, scenario: str) -> bool:
    if scenario.startswith("BC:"):  # a broadcast's own holdout (workflows.policy.holdout_of)
        return bucket(member, scenario, "holdout") < BROADCAST_HOLDOUT
    return in_holdout(member, scenario, PolicyConfig())


CROSS_LINE = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2980}


def sample_converts(m: str, t0: datetime) -> list[tuple[float, Step]]:
    return [
        (0, registered(m, t0)),
        (0, sample(m, t0, "s1", days_supply=7)),
        (1, shipped(m, t0 + days(1), "s1")),  # run-out day 8: run-out offer day 6
        (7.5, order(m, t0 + days(7.5), "o1")),  # the day before the last call
        (9, shipped(m, t0 + days(9), "o1")),
    ]


def normal_buyer_goes_dormant(m: str, t0: datetime) -> list[tuple[float, Step]]:
    return [
        (0, registered(m, t0)),
        (0, order(m, t0, "o1")),
        (2, shipped(m, t0 + days(2), "o1")),
        (31, order(m, t0 + days(31), "o2")),
        (33, shipped(m, t0 + days(33), "o2")),
    ]  # dormant on day 121: S11 on day 121 and 151


def subscriber_pauses(m: str, t0: datetime) -> list[tuple[float, Step]]:
    return [
        (0, registered(m, t0)),
        (0, order(m, t0, "o1", subscription_id="sub-1")),
        (0, subscription("subscription_started", m, t0, sku="KOSO-30", interval_days=30)),
        (2, shipped(m, t0 + days(2), "o1")),
        (20, subscription("subscription_paused", m, t0 + days(20))),
    ]  # S07 on day 80 of the journey (day 60 of the pause)


def churn_signal_then_erasure(m: str, t0: datetime) -> list[tuple[float, Step]]:
    return [
        (0, registered(m, t0)),
        (0, order(m, t0, "o1", subscription_id="sub-1")),
        (0, subscription("subscription_started", m, t0, sku="KOSO-30", interval_days=30)),
        (10, event("churn_signal", m, t0 + days(10), signal="cancel_page_viewed")),
        (12, subscription("subscription_interval_changed", m, t0 + days(12), interval_days=60)),
        (20, event("member_erased", m, t0 + days(20))),
    ]


# --- broadcasts (v7): runs of a broadcast reach the member as broadcast_requested events ------
# What the BroadcastWorkflow's page writes for one member (activities.broadcast): the weekly
# newsletter with a holdout of its own, sent by email; a flash of another broadcast, no holdout.
NEWSLETTER, FLASH, CAMPAIGN = "weekly_news", "news_flash", "cross_campaign"
BROADCAST_HOLDOUT = 10


def broadcast_run(m: str, at: datetime, run: str, broadcast: str = NEWSLETTER, *, template: str = "weekly_news",
                  channel: str | None = "email", holdout: int | None = BROADCAST_HOLDOUT) -> MemberEvent:
    return parse_event({"type": "broadcast_requested", "event_id": broadcast_event_id(broadcast, run, m),
                        "member_id": m, "occurred_at": at.isoformat(), "broadcast": broadcast, "run": run,
                        "template": template, "channel": channel, "holdout_percent": holdout})


def flash(m: str, at: datetime, run: str) -> MemberEvent:
    return broadcast_run(m, at, run, FLASH, holdout=0)


def weekly_newsletter_sent(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """Three weekly runs of the newsletter by email, sent at once; a campaign with no channel
    of its own is routed like a scenario's step (LINE first for an online member) and, run at
    21:36, waits for 09:00 (quiet hours)."""
    return [
        (0, registered(m, t0)),
        (1, broadcast_run(m, t0 + days(1), "2026w01")),
        (8, broadcast_run(m, t0 + days(8), "2026w02")),
        (10.4, broadcast_run(m, t0 + days(10.4), "spring", CAMPAIGN, template="cross_campaign", channel=None)),
        (15, broadcast_run(m, t0 + days(15), "2026w03")),
    ]


def newsletter_at_the_frequency_cap(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """Three flashes on day 0 fill the cap (3 in 7 days): day 5's newsletter waits for day 7,
    when the first flash leaves the window, and is sent then. Three more flashes on day 20 and
    the newsletter an hour later: the cap frees on day 27, after the 3 days a touch may be
    late, so that run is suppressed (frequency_cap)."""
    return [
        (0, registered(m, t0, line=False, reachable=("email",))),
        *((0, flash(m, t0, f"a{k}")) for k in range(3)),
        (5, broadcast_run(m, t0 + days(5), "2026w01")),  # postponed to day 7, then sent
        *((20, flash(m, t0 + days(20), f"b{k}")) for k in range(3)),
        (20.05, broadcast_run(m, t0 + days(20.05), "2026w03")),  # suppressed: frequency_cap
    ]


def no_consent(m: str, at: datetime) -> MemberEvent:
    return event("member_registered", m, at, sales_channel="online",
                 consent={"email": False, "line": False, "sms": False, "push": False, "dm": False},
                 contact={"email": f"{m}@example.jp"})


def newsletter_without_consent(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """Registered without any consent, with a sample: S01's welcome, the newsletter and a
    routed campaign find no channel (suppressed no_channel); the member opts into email on
    day 9: the next run is sent, and so is the sample's run-out offer."""
    return [
        (0, no_consent(m, t0)),
        (0, sample(m, t0, "s1", days_supply=14)),
        (1, broadcast_run(m, t0 + days(1), "2026w01")),
        (2, broadcast_run(m, t0 + days(2), "spring", CAMPAIGN, template="cross_campaign", channel=None)),
        (9, event("consent_changed", m, t0 + days(9), channel="email", granted=True)),
        (10, broadcast_run(m, t0 + days(10), "2026w02")),
    ]


def newsletter_holdout(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """A sample member in the newsletter's own holdout: held out at every run (the same
    members run after run); S01's touches and a flash of another broadcast, without a
    holdout, are sent."""
    return [
        (0, registered(m, t0)),
        (0, sample(m, t0, "s1", days_supply=7)),
        (1, broadcast_run(m, t0 + days(1), "2026w01")),
        (3, flash(m, t0 + days(3), "c0")),
        (8, broadcast_run(m, t0 + days(8), "2026w02")),
    ]


def newsletter_run_twice(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """The same run reaches the member three times: through the event log at 21:36 (routed
    to LINE, it waits for 09:00), again while it waits (a page retried after its worker was
    killed), and again after it was sent (a page retried after an outage). One touch."""
    run = broadcast_run(m, t0 + days(1.4), "2026w01", channel=None)
    return [
        (0, registered(m, t0)),
        (1.4, run),
        (1.41, Again(run)),
        (2.5, Again(run)),
        (8, broadcast_run(m, t0 + days(8), "2026w02")),
    ]


def erased_with_touches_pending(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """Erased after its first purchase: S03's testimonial and survey and S06's upsell are still pending."""
    return [
        (0, registered(m, t0)),
        (0, order(m, t0, "o1")),
        (2, shipped(m, t0 + days(2), "o1")),
        (5, event("member_erased", m, t0 + days(5))),
    ]


async def _lose_line_address(pool: asyncpg.Pool, member: str) -> None:
    await pool.execute("UPDATE member_contacts SET line_user_id = NULL WHERE member_id = $1", member)


def delivery_fails_for_good(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """The member's LINE id disappears from the contact data behind the workflow's back (the
    workflow still routes to LINE): the delivery activity cannot render the message and fails
    non-retryably (NoRecipient); the workflow records ``suppressed: delivery_failed:NoRecipient``."""
    return [
        (0, registered(m, t0)),
        (0, order(m, t0, "o1")),
        (2, shipped(m, t0 + days(2), "o1")),
        (3, OutOfBand("LINE id removed from member_contacts", _lose_line_address)),
    ]  # S03 testimonial (day 17), survey (day 27) and S06 upsell (day 28) fail


def quiet_hours_and_frequency_cap(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """A LINE member whose events come in the evening (t0 is 21:40 Tokyo).

    The S01 welcome waits for 09:00; a churn signal the next evening adds S12's follow-up,
    so the sample's run-out offer and last call compete with it in one week: the last call
    is the 4th marketing touch in 7 days and waits for the cap to free a slot.
    """
    return [
        (0, registered(m, t0)),
        (0, sample(m, t0, "s1", days_supply=6)),  # welcome → day 1 09:00; run-out day 6
        (1, event("churn_signal", m, t0 + days(1), signal="cancel_page_viewed")),  # call now, FAQ day 2 10:00
        (4.2, event("churn_signal", m, t0 + days(4.2), signal="skip_requested")),  # within 30 days: no new S12
        (12, order(m, t0 + days(12), "o1")),  # 21:40 again: S03's insert at once (no quiet hours for inserts)
        (13, shipped(m, t0 + days(13), "o1")),
    ]


def loyal_monthly_buyer(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """The new ledger: an order every month for years (F ≥ 40), shipped two days later.

    S08 every 180 days from F4, S09 every 90 days from F3 until the member buys the cross
    product (in year 3), then S10 when it lapses; orders beyond the newest 24 are archived.
    """
    steps: list[tuple[float, Step]] = [(0, registered(m, t0))]
    months = LOYAL_YEARS * 365 // LOYAL_EVERY_DAYS
    for n in range(months):
        at = n * LOYAL_EVERY_DAYS
        extra = [CROSS_LINE] if n == 36 else []
        steps.append((at, order(m, t0 + days(at), f"o{n + 1}", extra_lines=extra)))
        steps.append((at + 2, shipped(m, t0 + days(at + 2), f"o{n + 1}")))
    return steps


def subscriber_for_years_continues_as_new(m: str, t0: datetime) -> list[tuple[float, Step]]:
    """A 定期 member for CONTINUE_AS_NEW_YEARS years: a delivery every month, a skip request every
    fifth month, the interval lengthened and shortened again each year, a two-month pause every
    third year. Its history passes the server's limit and it continues-as-new with its state, its
    planned touches and any unread events carried into the next run."""
    steps: list[tuple[float, Step]] = [
        (0, registered(m, t0)),
        (0, subscription("subscription_started", m, t0, sku="KOSO-30", interval_days=30)),
    ]
    day, n = 0, 0
    while day < CONTINUE_AS_NEW_YEARS * 365:
        n += 1
        at = t0 + days(day)
        steps.append((day, order(m, at, f"o{n}", subscription_id="sub-1")))
        steps.append((day + 2, shipped(m, at + days(2), f"o{n}")))
        if n % 5 == 0:
            steps.append((day + 20, event("churn_signal", m, at + days(20), signal="skip_requested")))
        if n % 12 == 6:
            steps.append((day + 10, subscription("subscription_interval_changed", m, at + days(10), interval_days=45)))
        if n % 12 == 9:
            steps.append((day + 10, subscription("subscription_interval_changed", m, at + days(10), interval_days=30)))
        if n % 36 == 20:  # a pause of two months, then the deliveries go on
            steps.append((day + 5, subscription("subscription_paused", m, at + days(5))))
            steps.append((day + 65, subscription("subscription_resumed", m, at + days(65))))
            day += 60
        day += 30
    return steps


SHOP_CHANGES = (
    # Day 20: 11:30 and S06 off (the S06 upsell of day 29 pending); day 60: S06 back on, S11's
    # second step on day 100 instead of 120 (both S11 steps pending then).
    (20, Rules(policy=PolicyConfig(send_hour=11, send_minute=30), scenarios={"S06": ScenarioRules(enabled=False)})),
    (60, Rules(policy=PolicyConfig(send_hour=11, send_minute=30),
               scenarios={"S11": ScenarioRules(steps={"new_product": StepRules(days=100)})})),
)


JOURNEYS: tuple[Journey, ...] = (
    Journey("sample_converts", "S01 to its exit, S03 after the conversion", sample_converts, 40,
            not_held_out=("S01", "S03")),
    Journey("normal_buyer_goes_dormant", "S03, S04, S06 and S11 on day 90 and 120", normal_buyer_goes_dormant, 160,
            not_held_out=("S03", "S04", "S06", "S11")),
    Journey("subscriber_pauses", "S03 without upsell, S07 on day 60 of the pause", subscriber_pauses, 90,
            not_held_out=("S03", "S07")),
    Journey("churn_signal_then_erasure", "S12 twice within 30 days, then erasure", churn_signal_then_erasure, 25,
            not_held_out=("S03", "S12")),
    Journey("erased_with_touches_pending", "erasure cancels S03 and S06 touches still pending",
            erased_with_touches_pending, 8, not_held_out=("S03", "S06")),
    Journey("delivery_fails_for_good", "a send that fails non-retryably is recorded suppressed",
            delivery_fails_for_good, 32, not_held_out=("S03", "S06")),
    Journey("quiet_hours_and_frequency_cap", "LINE at 21:40 waits for 09:00; a 4th touch in 7 days waits",
            quiet_hours_and_frequency_cap, 30, start=clock(21, 40), not_held_out=("S01", "S03", "S12")),
    Journey("loyal_monthly_buyer", f"{LOYAL_YEARS} years of monthly orders: S08, S09, S10, archiving",
            loyal_monthly_buyer, LOYAL_YEARS * 365 + 10, not_held_out=("S03", "S04", "S06", "S08", "S09", "S10")),
    Journey("subscriber_for_years_continues_as_new", f"{CONTINUE_AS_NEW_YEARS} years of 定期: continue-as-new",
            subscriber_for_years_continues_as_new, CONTINUE_AS_NEW_YEARS * 365 + 10,
            not_held_out=("S03", "S07", "S08", "S09", "S12"), continues_as_new=True),
    Journey("shop_changes_its_configuration", "send time and S06 changed on day 20, S11 on day 60",
            normal_buyer_goes_dormant, 160, not_held_out=("S03", "S04", "S06", "S11"), changes=SHOP_CHANGES),
    # v7-broadcasts: members that broadcast runs reach (workflows.broadcasts, the "BC" touch).
    Journey("weekly_newsletter_sent", "three newsletter runs by email and a routed campaign, all sent",
            weekly_newsletter_sent, 18, not_held_out=(f"BC:{NEWSLETTER}", f"BC:{CAMPAIGN}")),
    Journey("newsletter_at_the_frequency_cap", "a run postponed by the cap then sent, one suppressed by it",
            newsletter_at_the_frequency_cap, 25, not_held_out=(f"BC:{NEWSLETTER}",)),
    Journey("newsletter_without_consent", "no consent: no_channel; email granted, the next run sent",
            newsletter_without_consent, 16, not_held_out=("S01", f"BC:{NEWSLETTER}", f"BC:{CAMPAIGN}")),
    Journey("newsletter_holdout", "in the newsletter's own holdout at every run; S01 and a flash sent",
            newsletter_holdout, 11, not_held_out=("S01",), held_out=(f"BC:{NEWSLETTER}",)),
    Journey("newsletter_run_twice", "the same run signalled three times, waiting and decided: one touch",
            newsletter_run_twice, 11, not_held_out=(f"BC:{NEWSLETTER}",)),
)
BOOK = "_book.json"  # the configuration versions in force while a tag was recorded


# --- recording ---------------------------------------------------------------------------------


async def next_local(env: WorkflowEnvironment, at: clock) -> datetime:
    """Let the test server's clock run to the next ``at`` in Tokyo; that moment is the journey's t0."""
    now = (await env.get_current_time()).astimezone(JST)
    start = datetime.combine(now.date(), at, tzinfo=JST)
    if start <= now:
        start += timedelta(days=1)
    await env.sleep(start - now)
    return start


async def _carry_out(pool: asyncpg.Pool, client: Client, journey: Journey, step: Step) -> None:
    if isinstance(step, OutOfBand):
        await step.run(pool, journey.member)
    elif isinstance(step, Again):
        await signal_with_start(client, step.event, TASK_QUEUE)
    else:
        await send(client, TASK_QUEUE, step)


async def run(env: WorkflowEnvironment, pool: asyncpg.Pool, journey: Journey,
              book: VersionBook | None = None) -> list[WorkflowHistory]:
    t0 = await next_local(env, journey.start)
    if book is not None and journey.changes:  # effective after now: never in a recorded past
        number = max(v.number for v in book.versions)
        added = [Version(number + n, t0 + days(offset), rules.model_copy(update={"version": number + n}))
                 for n, (offset, rules) in enumerate(journey.changes, start=1)]
        book.replace([*book.versions, *added], None)
    elapsed = 0.0
    for offset, step in sorted(journey.steps(journey.member, t0), key=lambda s: s[0]):
        if offset > elapsed:
            await env.sleep(days(offset - elapsed))
            elapsed = offset
        await _carry_out(pool, env.client, journey, step)
    await env.sleep(days(journey.run_days - elapsed))
    return await histories_of(env.client, journey.member)


async def histories_of(client: Client, member: str) -> list[WorkflowHistory]:
    """Every run of the member's workflow, first to latest (more than one after continue-as-new)."""
    latest = await client.get_workflow_handle(workflow_id(member)).fetch_history()
    first_run = latest.events[0].workflow_execution_started_event_attributes.first_execution_run_id
    runs, run_id = [], first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id(member), run_id=run_id).fetch_history()
        runs.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW else "")
    return runs


def write_runs(folder: Path, name: str, runs: list[WorkflowHistory]) -> list[Path]:
    paths = []
    for n, history in enumerate(runs, start=1):
        path = folder / (f"{name}.json" if n == 1 else f"{name}.run{n}.json")
        path.write_text(history.to_json())
        paths.append(path)
    return paths


async def record(tag: str, out: Path = HISTORIES, only: set[str] | None = None) -> Path:
    folder = out / tag
    if folder.exists():
        raise SystemExit(f"{folder} exists: histories of a released version are never re-recorded")
    journeys = [j for j in JOURNEYS if only is None or j.name in only]
    # Recorded elsewhere and moved into place when every journey is done: a failed recording
    # leaves no half-filled tag behind.
    staging = Path(tempfile.mkdtemp(prefix=f"histories-{tag}-"))
    done = False
    try:
        book = VersionBook()
        async with _servers(book) as (env, pool):
            for journey in journeys:
                started = time.monotonic()
                runs = await run(env, pool, journey, book)
                if journey.continues_as_new and len(runs) < 2:
                    raise SystemExit(f"{journey.name} did not continue-as-new in {journey.run_days} days "
                                     f"({len(runs[0].events)} history events): raise CONTINUE_AS_NEW_YEARS")
                paths = write_runs(staging, journey.name, runs)
                print(f"recorded {journey.name} — {journey.about} ({journey.member}): {len(paths)} run(s), "
                      f"{sum(len(h.events) for h in runs)} events, {time.monotonic() - started:.1f} s", flush=True)
        (staging / BOOK).write_text(dump_book(book))
        done = True
    finally:
        if not done:
            shutil.rmtree(staging, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staging, folder)
    return folder


@asynccontextmanager
async def _servers(book: VersionBook) -> AsyncIterator[tuple[WorkflowEnvironment, asyncpg.Pool]]:
    """A fresh embedded PostgreSQL and time-skipping test server, the real worker on TASK_QUEUE
    deciding under ``book``; all of it stopped and removed afterwards."""
    pgdata = Path(tempfile.mkdtemp(prefix="record-histories-pg-"))
    pg = start_embedded_postgres(pgdata / "pg")
    pool = await db.create_pool(pg.database_url)
    await db.migrate(pool)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=binary("temporal-test-server"))
    try:
        await register_search_attributes(env.client, env.client.namespace)
        versions.install(TASK_QUEUE, book)
        async with running_worker(env.client, pool, TASK_QUEUE):
            yield env, pool
    finally:
        versions.uninstall(TASK_QUEUE)
        await env.shutdown()
        await pool.close()
        pg.stop()
        shutil.rmtree(pgdata, ignore_errors=True)


# --- a broadcast's run ---------------------------------------------------------------------------
# One BroadcastWorkflow run (workflows.broadcast) over a few members, for its replay test
# (test_replay_broadcast.py). Kept apart from the member histories, one folder per tag:
#
#     .venv/bin/python -m tests.replay.record_histories v1-first-runner --broadcast
#     .venv/bin/python -m tests.replay.record_histories v1-first-runner --broadcast --out /tmp/h
#
# Record a new tag after a change to BroadcastWorkflow that is meant to keep runs under way
# compatible (behind workflow.patched); never re-record a tag to make its replay pass.
BROADCAST_HISTORIES = Path(__file__).parent / "broadcast_histories"
BROADCAST_NAME = "weekly_newsletter_run"  # the history's file name


def broadcast_input() -> BroadcastInput:
    """The newsletter to every member, two members a page at one member a second: pages,
    the timers that keep the rate between them, the end's forwarding, the close."""
    return BroadcastInput(name=NEWSLETTER, run="2026w10", segment_name="everyone",
                          segment=Segment(description="全会員"), template="weekly_news", channel="email",
                          holdout_percent=BROADCAST_HOLDOUT, rate_per_second=1, page_size=2)


async def run_broadcast(env: WorkflowEnvironment, pool: asyncpg.Pool) -> tuple[WorkflowHistory, BroadcastProgress]:
    """Six members: four reachable by email, one without consent, one erased after the run's
    audience was taken (in the event log, not yet in its workflow: the ingress refuses it)."""
    t0 = await next_local(env, clock(10))
    reachable = [f"replay-bc-{n}" for n in range(4)]
    silent, erased = "replay-bc-silent", "replay-bc-erased"
    await send(env.client, TASK_QUEUE, *(registered(m, t0, line=False, reachable=("email",))
                                         for m in [*reachable, erased]))
    await send(env.client, TASK_QUEUE, no_consent(silent, t0))
    await env.sleep(timedelta(hours=1))

    async def projected() -> None:
        assert await pool.fetchval("SELECT count(*) FROM members") == 6

    await eventually(projected)
    late = event("member_erased", erased, t0 + timedelta(minutes=50))
    await accept(pool, [(1, late)])
    wanted = await start_run(env.client, pool, broadcast_input(), TASK_QUEUE)
    progress = await env.client.get_workflow_handle_for(BroadcastWorkflow.run, wanted).result()
    await send(env.client, TASK_QUEUE, late)
    await env.sleep(days(1))  # the members' touches are decided (their histories are not kept)
    return await env.client.get_workflow_handle(wanted).fetch_history(), progress


async def record_broadcast(tag: str, out: Path = BROADCAST_HISTORIES) -> Path:
    folder = out / tag
    if folder.exists():
        raise SystemExit(f"{folder} exists: histories of a released version are never re-recorded")
    async with _servers(VersionBook()) as (env, pool):
        started = time.monotonic()
        history, progress = await run_broadcast(env, pool)
    if (progress.stage, progress.audience, progress.requested, progress.refused) != (Stage.FINISHED, 6, 5, 1):
        raise SystemExit(f"the run did not go as planned: {progress}")
    folder.mkdir(parents=True)
    (folder / f"{BROADCAST_NAME}.json").write_text(history.to_json())
    print(f"recorded {BROADCAST_NAME}: {progress.pages} pages, {progress.reached} reached, "
          f"{progress.requested} requested, {progress.refused} refused, {len(history.events)} events, "
          f"{time.monotonic() - started:.1f} s into {folder}", flush=True)
    return folder


def dump_book(book: VersionBook) -> str:
    import json

    return json.dumps([{"number": v.number, "effective_at": v.effective_at.isoformat(),
                        "rules": v.rules.model_dump(mode="json")} for v in book.versions], indent=1)


def load_book(path: Path) -> VersionBook:
    """The configuration versions a tag was recorded under (none: the SPEC's defaults)."""
    import json

    if not path.exists():
        return VersionBook()
    return VersionBook([Version(v["number"], datetime.fromisoformat(v["effective_at"]),
                                Rules.model_validate(v["rules"])) for v in json.loads(path.read_text())])


# --- the check ---------------------------------------------------------------------------------


@dataclass
class HistorySummary:
    """What a recorded history exercises: its timers and the outcome of every touch it decided."""

    path: Path
    events: int = 0
    timers_started: int = 0
    timers_fired: int = 0
    signals: int = 0
    activities_failed: int = 0
    continued_as_new: bool = False
    started_with_state: bool = False  # a run after continue-as-new
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # of the touches not sent
    postponed: int = 0  # sent ≥ 1 hour after it was due: quiet hours or the frequency cap
    scenarios: Counter = field(default_factory=Counter)

    @property
    def touches(self) -> int:
        return sum(self.outcomes.values())

    @property
    def mostly_expired(self) -> bool:
        return self.touches > 0 and self.outcomes["expired"] * 2 >= self.touches

    @property
    def suspicious(self) -> bool:
        """A history that hardly exercises the workflow: touches decided late, or no timer at all."""
        return self.mostly_expired or self.touches == 0 or self.timers_started == 0

    def line(self) -> str:
        outcomes = ", ".join(f"{o} {n}" for o, n in sorted(self.outcomes.items())) or "none"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
        flags = []
        if self.touches == 0:
            flags.append("NO TOUCH")
        if self.timers_started == 0:
            flags.append("NO TIMER STARTED")
        if self.mostly_expired:
            flags.append("MOSTLY EXPIRED")
        runs = "".join(
            note for note, on in ((", started from carried state", self.started_with_state),
                                  (", ends in continue-as-new", self.continued_as_new)) if on)
        return (
            f"{self.path.parent.name}/{self.path.name}: {self.events} events{runs}, {self.signals} signals, "
            f"timers {self.timers_started} started / {self.timers_fired} fired, "
            f"activities failed {self.activities_failed}\n"
            f"    touches {self.touches}: {outcomes}; sent ≥ 1 h after due (quiet hours, cap) {self.postponed}"
            + (f"\n    not sent: {reasons}" if reasons else "")
            + f"\n    scenarios: {' '.join(f'{s}×{n}' for s, n in sorted(self.scenarios.items()))}"
            + (f"\n    !! {'; '.join(flags)}" if flags else "")
        )


def _decode(payloads) -> list:
    return DATA_CONVERTER.payload_converter.from_payloads([decompress(p) for p in payloads])


def summarize(path: Path) -> HistorySummary:
    history = WorkflowHistory.from_json(f"member-{path.stem}", path.read_text())
    summary = HistorySummary(path=path, events=len(history.events))
    decided: dict[str, dict] = {}  # idempotency key → the last request for it (a failed send is followed by another)
    for e in history.events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            start = _decode(e.workflow_execution_started_event_attributes.input.payloads)
            summary.started_with_state = bool(start and start[0].get("state"))
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            summary.timers_started += 1
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            summary.timers_fired += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            summary.signals += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            summary.activities_failed += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            summary.continued_as_new = True
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = e.activity_task_scheduled_event_attributes
            (request,) = _decode(attributes.input.payloads)
            if attributes.activity_type.name == "deliver_touch":
                decided[request["key"]] = request
            elif attributes.activity_type.name == "record_outcomes":
                decided.update({t["key"]: t for t in request.get("touches", ())})
    for touch in decided.values():
        summary.outcomes[touch["outcome"]] += 1
        summary.scenarios[touch["scenario"]] += 1
        if touch["outcome"] != "sent":
            summary.reasons[touch["reason"].split(":")[0] if touch["outcome"] == "expired" else touch["reason"]] += 1
        elif _late(touch) >= timedelta(hours=1):
            summary.postponed += 1
    return summary


def _late(touch: dict) -> timedelta:
    return datetime.fromisoformat(touch["decided_at"]) - datetime.fromisoformat(touch["due_at"])


def check(*folders: Path) -> list[HistorySummary]:
    """Print a summary of every history under the folders (a tag's folder, or the folder of tags)."""
    paths = sorted(p for f in folders for p in ([f] if f.is_file() else f.rglob("*.json"))
                   if not p.name.startswith("_"))
    summaries = [summarize(p) for p in paths]
    for s in summaries:
        print(s.line())
    return summaries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.replay.record_histories", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tag", nargs="?", help="record the journeys into OUT/TAG")
    parser.add_argument("--out", type=Path, help=f"folder of tags (default {HISTORIES})")
    parser.add_argument("--only", action="append", metavar="JOURNEY", choices=[j.name for j in JOURNEYS],
                        help="record only this journey (repeatable)")
    parser.add_argument("--broadcast", action="store_true",
                        help=f"record one BroadcastWorkflow run into OUT/TAG instead (default OUT {BROADCAST_HISTORIES})")
    parser.add_argument("--check", nargs="*", type=Path, metavar="FOLDER",
                        help="summarise recorded histories (default: every tag in the histories folder)")
    args = parser.parse_args(argv)
    if args.check is not None:
        summaries = check(*(args.check or [HISTORIES]))
        raise SystemExit(1 if any(s.suspicious for s in summaries) else 0)
    if not args.tag:
        parser.error("a TAG to record, or --check")
    _quiet_logs()
    if args.broadcast:
        asyncio.run(record_broadcast(args.tag, args.out or BROADCAST_HISTORIES))
        return
    started = time.monotonic()
    folder = asyncio.run(record(args.tag, args.out or HISTORIES, set(args.only) if args.only else None))
    print(f"recorded into {folder} in {time.monotonic() - started:.0f} s\n")
    check(folder)


def _quiet_logs() -> None:
    """Warnings and errors only: a failed delivery is part of a journey, not news."""
    import logging

    import structlog

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)  # the journey's failed send, with traceback
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


if __name__ == "__main__":
    main()
