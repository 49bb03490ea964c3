"""The small version of ``make faults``: accepted events survive a Temporal outage and
reach every member exactly once, in order, once it is back."""

from __future__ import annotations

from bench.common import Stack
from bench.faults import measure, report


async def test_temporal_down_during_a_stream_loses_nothing_and_forwards_each_event_once():
    stack = Stack()
    try:
        result = await measure(stack, members=20, outage=3.0, log=lambda *_: None)
    finally:
        await stack.close()
    # It really was down: events accepted meanwhile waited in the log.
    assert result.outage_seconds >= 3.0 and result.waiting_at_restart > 0, report(result)
    assert (result.accepted, result.logged, result.forwarded) == (160, 160, 160), report(result)
    assert result.unforwarded == 0 and result.caught_up == 20, report(result)
