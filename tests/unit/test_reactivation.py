"""S11 is entered on day 90 after the latest main purchase (SPEC §4: "latest main purchase
ordered 90 days ago"), not at the purchase: a buyer who comes back before then never enters
it, so nothing of it is recorded, while one who comes back between day 90 and day 120 has
entered it and its day-120 step ends ``cancelled``."""

from __future__ import annotations

from tests.factories import cancelled, days, jst, order, registered, shipped
from tests.simulate import simulate
from workflows import lifecycle
from workflows.policy import settle
from workflows.rules import PolicyConfig
from workflows.touches import Outcome

M = "m-reactivation"
T0 = jst(2026, 4, 1, 12)
NO_HOLDOUT = PolicyConfig(holdout_percent=0, cap_touches=10)


def s11(records, occurrence: str) -> dict[str, tuple[Outcome, str]]:
    return {r.step: (r.outcome, r.reason) for r in records if r.scenario == "S11" and r.occurrence == occurrence}


def buyer(*later: float) -> list:
    events = [registered(M, T0), order(M, T0, "o1"), shipped(M, T0 + days(1), "o1")]
    for n, day in enumerate(later, start=2):
        events += [order(M, T0 + days(day), f"o{n}"), shipped(M, T0 + days(day + 1), f"o{n}")]
    return events


def test_a_buyer_back_before_day_90_never_enters_reactivation():
    _, records = simulate(buyer(50), 200, NO_HOLDOUT)
    assert s11(records, "o1") == {}  # not two `cancelled` touches
    assert s11(records, "o2") == {"comeback_offer": (Outcome.SENT, "route:line"),
                                  "new_product": (Outcome.SENT, "route:line")}
    comeback = next(r for r in records if r.scenario == "S11" and r.step == "comeback_offer")
    assert (comeback.due_at.date() - T0.date()).days == 50 + 90


def test_a_buyer_back_between_day_90_and_120_entered_it_and_the_second_step_is_cancelled():
    _, records = simulate(buyer(100), 200, NO_HOLDOUT)
    assert s11(records, "o1") == {"comeback_offer": (Outcome.SENT, "route:line"),
                                  "new_product": (Outcome.CANCELLED, "exit:main_purchase")}


def test_an_order_cancelled_after_its_burst_brings_the_buyer_back_into_reactivation():
    events = buyer(50) + [cancelled(M, T0 + days(55), "o2")]
    _, records = simulate(events, 200, NO_HOLDOUT)
    assert s11(records, "o1") == {"comeback_offer": (Outcome.SENT, "route:line"),
                                  "new_product": (Outcome.SENT, "route:line")}
    assert s11(records, "o2") == {}


def test_runs_started_before_the_rule_still_cancel_at_the_next_purchase():
    """``entered_at_first_step=False`` is the workflow's branch for a run without the patch."""
    state = lifecycle.new_member(M)
    for e in buyer(50):
        state = lifecycle.apply(lifecycle.advance_clock(state, e.occurred_at), e)
    now = T0 + days(52)
    state = lifecycle.advance_clock(state, now)
    old = settle(state, {}, now, NO_HOLDOUT, entered_at_first_step=False)
    new = settle(state, {}, now, NO_HOLDOUT)
    old_o1 = {t.step: t.cancelled_reason for t in old.pending.values() if t.scenario == "S11" and t.occurrence == "o1"}
    old_o1 |= {t.step: r.reason for t, r in old.finished if t.scenario == "S11" and t.occurrence == "o1"}
    assert old_o1 == {"comeback_offer": "exit:main_purchase", "new_product": "exit:main_purchase"}
    assert not [t for t in new.pending.values() if t.scenario == "S11" and t.occurrence == "o1"]
    assert not [t for t, _ in new.finished if t.scenario == "S11" and t.occurrence == "o1"]
