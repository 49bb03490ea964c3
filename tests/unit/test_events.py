"""The event contract at the edge: valid events parse, invalid ones name their field."""

import pytest

from workflows.events import InvalidEvent, MemberRegistered, OrderPlaced, parse_event

ORDER = {
    "type": "order_placed", "event_id": "e1", "member_id": "m1",
    "occurred_at": "2026-04-01T10:00:00+09:00", "order_id": "o1",
    "lines": [{"sku": "KOSO-30", "role": "main", "quantity": 1, "days_supply": 30, "unit_price": 3980}],
}


def test_an_order_parses_with_its_lines_and_offset():
    event = parse_event(ORDER)
    assert isinstance(event, OrderPlaced)
    assert event.lines[0].days_supply == 30
    assert event.occurred_at.utcoffset().total_seconds() == 9 * 3600


def test_a_bare_registration_makes_an_online_tokyo_member_without_consent():
    from workflows.lifecycle import apply, new_member

    event = parse_event({"type": "member_registered", "event_id": "e", "member_id": "m",
                         "occurred_at": "2026-04-01T10:00:00Z"})
    assert isinstance(event, MemberRegistered)
    # Partial update: what the event leaves out is None, "unchanged" …
    assert event.sales_channel is None and event.timezone is None and event.consent is None
    # … and for a new member unchanged means online, Asia/Tokyo, no consent (SPEC §2).
    state = apply(new_member("m"), event)
    assert state.profile.sales_channel == "online" and state.profile.timezone == "Asia/Tokyo"
    assert not any(state.consent.values())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "order_exploded"}, "type"),
        ({"occurred_at": "2026-04-01T10:00:00"}, "occurred_at"),
        ({"member_id": ""}, "member_id"),
        ({"lines": [{"sku": "A", "role": "main", "days_supply": "30"}]}, "lines.0.days_supply"),
        ({"lines": [{"sku": "A", "role": "gift", "days_supply": 30}]}, "lines.0.role"),
        ({"lines": []}, "lines"),
        ({"coupon": "X"}, "coupon"),
        ({"occurred_at": "2150-01-01T00:00:00+09:00"}, "occurred_at"),
        ({"lines": [{"sku": "A", "role": "main", "quantity": 200, "days_supply": 30}]}, "lines.0"),
    ],
)
def test_an_invalid_event_names_the_field(change, field):
    with pytest.raises(InvalidEvent) as raised:
        parse_event(ORDER | change)
    assert any(problem.startswith(f"{field}:") for problem in raised.value.problems), raised.value.problems


def test_an_unknown_timezone_is_rejected():
    with pytest.raises(InvalidEvent, match="timezone"):
        parse_event({"type": "member_registered", "event_id": "e", "member_id": "m",
                     "occurred_at": "2026-04-01T10:00:00Z", "timezone": "Mars/Olympus"})


def test_text_that_is_not_json_is_rejected():
    with pytest.raises(InvalidEvent, match="Invalid JSON"):
        parse_event("{not json")
