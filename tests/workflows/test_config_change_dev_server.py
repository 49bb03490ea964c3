"""A configuration change reaches 100 members mid-journey on the dev server (real clock).

Version 1 sends at T1 (a minute boundary just ahead). 100 members are on their
journey: 50 bought 28 days ago (S06's upsell falls today at T1), 50 bought 15 days
ago (S03's testimonial falls today at T1; S06's upsell in 13 days). Version 2 is
applied before T1: send time T1 + 1 minute, S06 switched off. No member is signalled.
Each member wakes at T1 on the timer version 1 set, decides under version 2: every
pending S06 upsell ends ``cancelled`` naming the change, and every testimonial goes
out at T2. About two minutes of wall-clock time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta, timezone

import pytest

from activities import db
from activities.shop_versions import apply
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import accept
from tests.activities.test_shop_versions import EXAMPLE, shop, versions_url  # noqa: F401 (a fixture)
from tests.factories import JST, order, registered, shipped
from worker.main import build_worker, shop_configuration
from worker.settings import Settings
from workflows.member import MemberWorkflow, workflow_id

MEMBERS = 100
# Two and a half minutes of real clock: make faults runs it; tests/workflows/test_shop_config.py
# changes the configuration mid-journey on the time-skipping server in make test.
pytestmark = pytest.mark.slow
LEAD = timedelta(seconds=3)


def configuration(send: time, s06: bool):
    text = EXAMPLE.replace('send_time = "10:00"', f'send_time = "{send:%H:%M}"')
    text = text.replace("holdout_percent = 10", "holdout_percent = 0")
    assert f'send_time = "{send:%H:%M}"' in text and "holdout_percent = 0" in text
    return shop(text + ("" if s06 else "\n[scenarios.S06]\nenabled = false\n"))


def next_minute(at_least: timedelta) -> datetime:
    """The first minute boundary at least ``at_least`` from now, in Tokyo."""
    moment = datetime.now(JST) + at_least
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


async def test_a_change_reaches_100_members_at_their_next_decision(versions_url, dev_server_env, task_queue):  # noqa: F811
    client = dev_server_env.client
    settings = Settings(task_queue=task_queue, max_cached_workflows=MEMBERS + 10,
                        config_lead_seconds=int(LEAD.total_seconds()), config_refresh_seconds=1)
    pool = await db.create_pool(versions_url, max_size=10)
    t1 = next_minute(timedelta(seconds=40))
    t2 = t1 + timedelta(minutes=1)
    today = t1.date()
    noon = lambda days_ago: datetime.combine(today - timedelta(days=days_ago), time(12), tzinfo=JST)  # noqa: E731
    upsell_today = [f"m-cfg-a{n:03d}" for n in range(MEMBERS // 2)]
    testimonial_today = [f"m-cfg-b{n:03d}" for n in range(MEMBERS // 2)]
    events = []
    for m in upsell_today:
        events += [registered(m, noon(28), line=False, reachable=("email",)), order(m, noon(28), "o1"),
                   shipped(m, noon(27), "o1")]
    for m in testimonial_today:
        events += [registered(m, noon(15), line=False, reachable=("email",)), order(m, noon(15), "o1")]
    handles = [client.get_workflow_handle_for(MemberWorkflow.run, workflow_id(m))
               for m in upsell_today + testimonial_today]
    try:
        async with shop_configuration(pool, settings) as config, \
                build_worker(client, pool, settings, shops=config.shops):
            v1, _ = await apply(pool, configuration(t1.time(), s06=True), LEAD)
            await _until(lambda: config.shops.get(1) is not None and config.book.known_until > v1.effective_at
                         and datetime.now(timezone.utc) > v1.effective_at)
            await accept(pool, list(enumerate(events, start=1)))
            await Forwarder(pool, client, task_queue).forward_pending(upsell_today + testimonial_today)
            await _until_all(handles, lambda view: view.config_version == 1)
            assert datetime.now(JST) < t1 - LEAD, "the members took too long to start: T1 is too near"

            v2, _ = await apply(pool, configuration(t2.time(), s06=False), LEAD)
            assert v2.number == 2 and v2.effective_at < t1
            wait = (t2 - datetime.now(JST)).total_seconds() + 15
            await asyncio.sleep(max(wait, 0))
            await _until_all(handles, lambda view: view.config_version == 2)
            rows = await pool.fetch(
                "SELECT member_id, scenario, step, outcome, reason, planned_at, decided_at FROM touches"
                " WHERE scenario IN ('S03', 'S06') AND member_id LIKE 'm-cfg-%'")
    finally:
        for handle in handles:
            try:
                await handle.terminate("test finished")
            except Exception:  # noqa: BLE001 - already closed
                pass
        await pool.close()

    upsells = {r["member_id"]: r for r in rows if r["scenario"] == "S06"}
    assert set(upsells) == set(upsell_today + testimonial_today)  # every pending upsell has its outcome
    assert {(r["outcome"], r["reason"]) for r in upsells.values()} == {("cancelled", "config:v2:S06_off")}
    # Decided when each member woke on version 1's timer, T1, without a signal.
    assert {r["decided_at"].astimezone(JST).replace(second=0, microsecond=0) for r in upsells.values()} == {t1}
    testimonials = {r["member_id"]: r for r in rows if r["step"] == "testimonial"}
    assert set(testimonials) >= set(testimonial_today)
    for m in testimonial_today:
        r = testimonials[m]
        assert r["outcome"] == "sent", (m, r["outcome"], r["reason"])
        assert r["planned_at"].astimezone(JST) == t2 and r["decided_at"] >= t2
    assert not [r for r in rows if r["scenario"] == "S06" and r["outcome"] == "sent"]


async def _until(check, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _until_all(handles, check, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    waiting = list(handles)
    while waiting:
        views = await asyncio.gather(*(h.query(MemberWorkflow.state) for h in waiting), return_exceptions=True)
        waiting = [h for h, v in zip(waiting, views) if isinstance(v, BaseException) or not check(v)]
        if waiting:
            assert asyncio.get_running_loop().time() < deadline, f"{len(waiting)} members not there yet"
            await asyncio.sleep(0.5)
