"""Benchmark 6 — the carried state of a member after 1, 5 and 10 years (it must not grow with age).

What a member workflow carries across continue-as-new (``MemberInput``: the state
with its touch ledger, the touches still planned) is serialised as the data
converter would, right after the last purchase of 1, 5 and 10 years of monthly
buying: a plain monthly buyer, and a 定期 subscriber who also buys the cross
product, skips, lengthens its interval and pauses now and then. The pure core
runs the years (``tests/simulate.py``, as the workflow drives it): no server. The
baseline is the same member after one year; the target is that ten years cost
no more than 1.5× one year, under a fixed bound.

    python -m bench.state_size [--quick]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bench.common import Stack, Target, run_alone, table
from tests.simulate import Arrival, simulate_pending
from workflows.events import MemberEvent, parse_event
from workflows.messages import MemberInput
from workflows.policy import PolicyConfig

T0 = datetime(2020, 1, 6, 12, tzinfo=ZoneInfo("Asia/Tokyo"))
YEARS, QUICK_YEARS = (1, 5, 10), (1, 5)
BOUND = 48_000
RATIO = 1.5
KOSO = {"sku": "KOSO-30", "role": "main", "quantity": 1, "days_supply": 30, "unit_price": 3980}
NYUSAN = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2480}


def _events(member: str, years: int, subscriber: bool) -> list[MemberEvent]:
    raw: list[tuple[datetime, str, dict]] = [(T0, "member_registered", {
        "sales_channel": "online", "consent": {"email": True, "line": True}, "reachable": ["line", "email"]})]
    if subscriber:
        raw.append((T0, "subscription_started", {"subscription_id": "sub1", "sku": "KOSO-30", "interval_days": 30}))
    for month in range(12 * years):
        at = T0 + timedelta(days=30 * month)
        lines = [KOSO, NYUSAN] if subscriber and month % 3 == 0 else [KOSO]
        extra = {"subscription_id": "sub1"} if subscriber else {}
        raw += [(at, "order_placed", {"order_id": f"o{month}", "lines": lines, **extra}),
                (at + timedelta(days=2), "order_shipped", {"order_id": f"o{month}"})]
        if subscriber and month % 5 == 4:
            raw.append((at + timedelta(days=9), "churn_signal", {"signal": "skip_requested"}))
        if subscriber and month % 7 == 6:
            raw.append((at + timedelta(days=12), "subscription_interval_changed",
                        {"subscription_id": "sub1", "interval_days": 45 if month % 14 == 6 else 30}))
    return [parse_event({"type": kind, "event_id": f"{member}-{n}", "member_id": member,
                         "occurred_at": at.isoformat(), **fields}) for n, (at, kind, fields) in enumerate(raw)]


@dataclass
class StateSizeResult:
    rows: list[tuple[str, int, int, int, int]]  # persona, years, bytes, orders kept, ledger records

    def by_persona(self, persona: str) -> dict[int, int]:
        return {years: size for name, years, size, _, _ in self.rows if name == persona}

    def targets(self) -> list[Target]:
        out = []
        for persona in dict.fromkeys(r[0] for r in self.rows):
            sizes = self.by_persona(persona)
            oldest = max(sizes)
            ratio = sizes[oldest] / sizes[1]
            out.append(Target("state", f"{persona}: {sizes[oldest]:,} B at {oldest} y ({ratio:.2f}x 1 y)",
                              f"≤ {RATIO}x 1 y and < {BOUND:,} B", ratio <= RATIO and sizes[oldest] < BOUND))
        return out


def measure_sync(quick: bool) -> StateSizeResult:
    rows = []
    for persona, subscriber in (("monthly_buyer", False), ("subscriber", True)):
        for years in QUICK_YEARS if quick else YEARS:
            events = _events(persona, years, subscriber)
            arrivals: list[Arrival] = [(e.occurred_at, e) for e in events]
            last = max(e.occurred_at for e in events)
            state, pending = simulate_pending(arrivals, (last - T0).days + 3, PolicyConfig())
            carried = MemberInput(member_id=persona, state=state, planned=tuple(pending.values()))
            rows.append((persona, years, len(carried.model_dump_json()), len(state.orders), len(state.touches)))
    return StateSizeResult(rows)


async def measure(stack: Stack | None = None, quick: bool = False) -> StateSizeResult:
    return measure_sync(quick)


def report(result: StateSizeResult) -> str:
    rows = [(p, y, f"{b:,}", o, t) for p, y, b, o, t in result.rows]
    return ("== state size: the carried MemberInput right after the last monthly purchase ==\n"
            + table(rows, ["persona", "years", "bytes", "orders kept", "ledger records"]))


if __name__ == "__main__":
    run_alone(__doc__.splitlines()[0], measure, report)
