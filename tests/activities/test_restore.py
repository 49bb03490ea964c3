"""The restore activity against real PostgreSQL: a member's logged events and decided touches, read back."""

from __future__ import annotations

import json
from datetime import timedelta

import structlog
from temporalio.testing import ActivityEnvironment

from activities import restore
from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from activities.dry_run import DryRunChannels
from activities.projection import write_events
from activities.restore import RestoreActivities
from tests.factories import jst, order, registered, shipped
from workflows.events import Channel, Contact, MemberEvent
from workflows.lifecycle import new_member
from workflows.messages import DeliveryRequest, OutcomeBatch, RestoredMember, RestoreRequest
from workflows.projection import LoggedEvent, ProjectionRequest, snapshot
from workflows.touches import Outcome, touch_key

START = jst(2026, 4, 1)


async def log_events(pool, member_id: str, logged: dict[int, MemberEvent]) -> None:
    """Through the projection's own writer, as the workflow logs them."""
    await write_events(pool, ProjectionRequest(
        member_id=member_id, version=1, snapshot=snapshot(new_member(member_id), None),
        events=tuple(LoggedEvent(seq=seq, event=event) for seq, event in logged.items()),
    ))


def touch(member_id: str, scenario: str, step: str, outcome: Outcome, decided_days: int, *,
          channel: Channel | None = Channel.EMAIL, reason: str = "route:email",
          upsell: bool = False) -> DeliveryRequest:
    return DeliveryRequest(
        member_id=member_id, key=touch_key(member_id, scenario, step, "o1"), scenario=scenario, step=step,
        occurrence="o1", channel=channel, outcome=outcome, reason=reason, due_at=START + timedelta(days=10),
        decided_at=START + timedelta(days=decided_days), variant=None, upsell=upsell,
        context={"order_id": "o1", "sku": "KOSO-30"},
    )


async def load(pool, member_id: str) -> RestoredMember:
    return await ActivityEnvironment().run(RestoreActivities(pool).load_member_log, RestoreRequest(member_id=member_id))


async def test_events_come_back_in_arrival_order_without_contact_data(pool, member_id):
    joined, bought, sent = (registered(member_id, START), order(member_id, START + timedelta(days=1), "o1"),
                            shipped(member_id, START + timedelta(days=2), "o1"))
    await log_events(pool, member_id, {3: sent, 1: joined})  # a batch may arrive in any order
    await log_events(pool, member_id, {2: bought})

    restored = await load(pool, member_id)

    assert restored.events == (joined.model_copy(update={"contact": None}), bought, sent)
    assert restored.last_seq == 3
    assert restored.events[0].reachable == joined.reachable  # what routing needs survives; addresses do not


async def test_touches_come_back_as_decided_in_the_order_they_were_decided(pool, member_id):
    await store_contacts(pool, {member_id: Contact(email=f"{member_id}@example.jp")})
    deliveries = DeliveryActivities(pool)
    env = ActivityEnvironment()
    upsold = touch(member_id, "S03", "testimonial", Outcome.SENT, 15, upsell=True)
    omitted = touch(member_id, "S03", "survey", Outcome.SENT, 25, reason="route:email;upsell_omitted:subscriber")
    thanks = touch(member_id, "S03", "thanks_insert", Outcome.SENT, 1, channel=Channel.INSERT, reason="route:insert")
    covered = touch(member_id, "S06", "upsell", Outcome.SUPPRESSED, 20, channel=None, reason="covered_by:S03")
    for sent in (upsold, omitted, thanks):
        await env.run(deliveries.deliver, sent)
    await env.run(deliveries.record_outcomes, OutcomeBatch(member_id=member_id, touches=(covered,)))

    restored = await load(pool, member_id)

    assert [t.key for t in restored.touches] == [thanks.key, upsold.key, covered.key, omitted.key]
    by_key = {t.key: t for t in restored.touches}
    first = by_key[upsold.key]
    assert (first.scenario, first.step, first.occurrence, first.outcome, first.reason, first.channel) == (
        "S03", "testimonial", "o1", Outcome.SENT, "route:email", Channel.EMAIL)
    assert (first.due_at, first.decided_at) == (upsold.due_at, upsold.decided_at)
    # S06 is suppressed when S03 of the same purchase carried the upsell: the flag must survive a restore.
    assert {t.key: t.upsell for t in restored.touches} == {
        thanks.key: False, upsold.key: True, covered.key: False, omitted.key: False}
    assert by_key[covered.key].channel is None


async def test_a_member_with_nothing_logged_restores_empty(pool, member_id):
    assert await load(pool, member_id) == RestoredMember(member_id=member_id)


async def test_a_row_that_no_longer_parses_is_skipped_and_logged(pool, member_id, monkeypatch):
    joined, bought = registered(member_id, START), order(member_id, START + timedelta(days=1), "o1")
    await log_events(pool, member_id, {1: joined, 3: bought})
    stranger = order("someone-else", START, "o9")
    for seq, payload in ((2, {"type": "order_placed", "event_id": "broken-1", "member_id": member_id}),
                         (4, json.loads(stranger.model_dump_json()))):
        await pool.execute(
            "INSERT INTO member_events (event_id, member_id, seq, type, occurred_at, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            f"{member_id}-{seq}", member_id, seq, payload["type"], START, json.dumps(payload))
    captured = structlog.testing.CapturingLogger()
    monkeypatch.setattr(restore, "log", captured)

    restored = await load(pool, member_id)

    assert restored.events == (joined.model_copy(update={"contact": None}), bought)
    assert restored.last_seq == 4  # a skipped row keeps its number: new events must log after it
    skipped = [c.kwargs["seq"] for c in captured.calls if c.args == ("restore.event_skipped",)]
    assert skipped == [2, 4]


async def test_a_dry_run_has_nothing_to_restore(member_id):
    restored = await ActivityEnvironment().run(DryRunChannels().load_member_log, RestoreRequest(member_id=member_id))
    assert restored == RestoredMember(member_id=member_id)
