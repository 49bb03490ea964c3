"""The pure fold: stage, F, subscription, anchors; duplicates and delivery order change nothing."""

from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import member_events

from tests.factories import days, event, jst, order, registered, sample, shipped
from workflows.lifecycle import MemberState, Stage, SubscriptionStatus, advance_clock, apply, new_member

M = "m1"
T0 = jst(2026, 4, 1)


def fold(events, state: MemberState | None = None) -> MemberState:
    return reduce(apply, events, state or new_member(M))


def test_stages_follow_the_golden_route():
    steps = [
        (registered(M, T0), Stage.PROSPECT),
        (sample(M, T0 + days(1), "s1"), Stage.SAMPLE),
        (order(M, T0 + days(5), "t1", role="trial"), Stage.TRIAL),
        (order(M, T0 + days(10), "o1"), Stage.F1),
        (order(M, T0 + days(40), "o2"), Stage.F2),
        (order(M, T0 + days(70), "o3"), Stage.F3),
        (order(M, T0 + days(100), "o4"), Stage.ESTABLISHED),
    ]
    state = new_member(M)
    for e, stage in steps:
        state = apply(state, e)
        assert state.stage is stage, e.type
    assert state.purchase_count == 4


def test_dormant_after_90_days_without_a_main_purchase_and_back_on_the_next():
    state = fold([order(M, T0, "o1"), order(M, T0 + days(30), "o2")])
    assert advance_clock(state, T0 + days(119)).stage is Stage.F2
    dormant = advance_clock(state, T0 + days(120))
    assert dormant.stage is Stage.DORMANT
    assert apply(dormant, order(M, T0 + days(150), "o3")).stage is Stage.F3


def test_trial_and_samples_do_not_count_as_main_purchases():
    state = fold([sample(M, T0, "s1"), order(M, T0, "t1", role="trial")])
    assert state.purchase_count == 0 and state.stage is Stage.TRIAL


def test_a_cancelled_order_no_longer_counts():
    state = fold([order(M, T0, "o1"), order(M, T0 + days(30), "o2"),
                  event("order_cancelled", M, T0 + days(31), order_id="o2")])
    assert state.purchase_count == 1 and state.stage is Stage.F1


def test_a_shipment_before_its_order_is_held_then_anchors_the_run_out():
    early = fold([shipped(M, T0 + days(2), "o1")])
    assert early.purchase_count == 0
    state = apply(early, order(M, T0, "o1", days_supply=30, quantity=2))
    purchase = state.latest_main_purchase()
    assert purchase.anchor == T0 + days(2)
    assert purchase.run_out_at == T0 + days(62)


def test_subscription_status_pauses_resumes_and_cancels():
    sub = {"subscription_id": "sub1"}
    state = fold([event("subscription_started", M, T0, sku="KOSO-30", interval_days=30, **sub)])
    assert state.subscription_status is SubscriptionStatus.ACTIVE
    state = apply(state, event("subscription_paused", M, T0 + days(40), **sub))
    assert state.subscription_status is SubscriptionStatus.PAUSED
    state = apply(state, event("subscription_resumed", M, T0 + days(50), **sub))
    assert state.subscription_status is SubscriptionStatus.ACTIVE
    state = apply(state, event("subscription_cancelled", M, T0 + days(60), **sub))
    assert state.subscription_status is SubscriptionStatus.CANCELLED


def test_lengthening_the_interval_is_recorded_as_a_churn_sign():
    sub = {"subscription_id": "sub1"}
    state = fold([
        event("subscription_started", M, T0, sku="KOSO-30", interval_days=30, **sub),
        event("subscription_interval_changed", M, T0 + days(20), interval_days=60, **sub),
    ])
    assert state.subscriptions["sub1"].lengthened_at == T0 + days(20)
    assert state.subscriptions["sub1"].interval_days == 60


def test_consent_is_last_writer_wins_by_occurred_at():
    state = fold([
        registered(M, T0, line=True),
        event("consent_changed", M, T0 + days(2), channel="line", granted=False),
        event("consent_changed", M, T0 + days(1), channel="line", granted=True),  # late, older
    ])
    assert state.can_reach("line") is False
    assert state.can_reach("email") is True


def test_a_member_without_registration_counts_as_registered_at_its_first_event():
    state = fold([order(M, T0 + days(3), "o1"), sample(M, T0, "s1")])
    assert state.registered_at == T0
    assert state.consent == {} and not state.can_reach("email")


def test_erasure_is_terminal():
    state = fold([order(M, T0, "o1"), event("member_erased", M, T0 + days(1))])
    assert state.stage is Stage.ERASED
    assert apply(state, order(M, T0 + days(2), "o2")) == state


def test_old_orders_are_summarised_and_still_counted():
    events = [order(M, T0 + days(30 * i), f"o{i}", extra_lines=(
        [{"sku": "CROSS", "role": "cross", "days_supply": 30, "unit_price": 100}] if i == 0 else []))
        for i in range(40)]
    state = fold(events)
    assert state.purchase_count == 40
    assert len(state.orders) <= 24
    assert state.archived.cross_purchases == 1


# --- properties ----------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(member_events(), st.data())
def test_duplicates_never_change_the_state(events, data):
    state = fold(events)
    duplicates = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=5))
    assert fold(duplicates, state) == state


@settings(max_examples=300, deadline=None)
@given(member_events(), st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_state(events, random):
    shuffled = list(events)
    random.shuffle(shuffled)
    left, right = fold(events), fold(shuffled)
    assert left == right
    assert left.stage is right.stage and left.purchase_count == right.purchase_count
