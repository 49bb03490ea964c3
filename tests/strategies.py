"""Hypothesis strategies: one member's events, as order systems might send them."""

from hypothesis import strategies as st

from tests.factories import days, event, jst, order, registered, sample, shipped

M = "m1"
T0 = jst(2026, 4, 1)


ORDER_IDS = [f"o{i}" for i in range(5)]
SUB_IDS = ["sub1", "sub2"]


def _at(minutes: int):
    return T0 + days(minutes / 1440)


@st.composite
def member_events(draw, erasure: bool = False):
    minutes = st.integers(min_value=0, max_value=200 * 1440)
    kinds = st.sampled_from([
        "registered", "sample", "order", "shipped", "cancelled", "sub_started", "sub_paused",
        "sub_resumed", "sub_cancelled", "interval", "churn", "consent", "erased",
    ])
    events = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=14)):
        if kind == "erased" and not erasure:
            continue
        at = _at(draw(minutes))
        order_id = draw(st.sampled_from(ORDER_IDS))
        sub = {"subscription_id": draw(st.sampled_from(SUB_IDS))}
        events.append({
            "registered": lambda: registered(M, at, line=draw(st.booleans())),
            "sample": lambda: sample(M, at, "s-" + order_id),
            "order": lambda: order(M, at, order_id, role=draw(st.sampled_from(["main", "trial", "cross"])),
                                   days_supply=draw(st.sampled_from([7, 30, 60]))),
            "shipped": lambda: shipped(M, at, order_id),
            "cancelled": lambda: event("order_cancelled", M, at, order_id=order_id),
            "sub_started": lambda: event("subscription_started", M, at, sku="K", interval_days=30, **sub),
            "sub_paused": lambda: event("subscription_paused", M, at, **sub),
            "sub_resumed": lambda: event("subscription_resumed", M, at, **sub),
            "sub_cancelled": lambda: event("subscription_cancelled", M, at, **sub),
            "interval": lambda: event("subscription_interval_changed", M, at,
                                      interval_days=draw(st.sampled_from([30, 45, 60])), **sub),
            "churn": lambda: event("churn_signal", M, at, signal="skip_requested"),
            "consent": lambda: event("consent_changed", M, at, channel="email", granted=draw(st.booleans())),
            "erased": lambda: event("member_erased", M, at),
        }[kind]())
    # An order id is placed at most once (a re-placed id would be a different order).
    seen, unique = set(), []
    for e in events:
        if e.type in ("order_placed", "sample_requested"):
            if e.order_id in seen:
                continue
            seen.add(e.order_id)
        unique.append(e)
    return unique or [registered(M, T0)]


