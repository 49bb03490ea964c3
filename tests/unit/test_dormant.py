"""A cached member's run waits between activations as one deflated blob (messages.freeze):
what it thaws must be what it froze, or the next activation would decide on another state."""

from __future__ import annotations

from hypothesis import given

from tests.simulate import simulate_pending
from tests.unit.test_ledger import LONG, _run_days, long_journeys
from workflows import messages
from workflows.projection import ProjectionLog


@LONG
@given(long_journeys())
def test_a_member_thaws_to_exactly_what_it_froze_at_any_age(events):
    state, pending = simulate_pending([(e.occurred_at, e) for e in events], _run_days(events))
    projection = ProjectionLog()
    for event in events[-3:]:
        projection.log(event)
    projection.wrote(projection.due(state, None))
    planned = tuple(pending.values())

    blob = messages.freeze(state, planned, projection)
    thawed = messages.thaw(blob)

    assert thawed.state == state and thawed.planned == planned and thawed.projection == projection
    # Frozen again it thaws to the same member (not always the same bytes: a set's order may differ).
    assert messages.thaw(messages.freeze(thawed.state, thawed.planned, thawed.projection)) == thawed
    assert len(blob) < len(thawed.model_dump_json()) / 2  # deflated
