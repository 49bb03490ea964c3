"""A generated shop for the reports and the dashboard: a few hundred members, and a loader.

``generate`` draws members from personas in a 単品通販 shop's usual proportions and
writes each one's event stream as the order system would send it (seeded, so the
same seed gives the same shop). Members react to the scenarios: whether a member
is in a scenario's holdout is a stable hash (``workflows.policy.in_holdout``), so
the generator knows it up front and lets treated members convert a little more
often, which gives the KPI report a lift to measure.

``load`` runs every member through ``tests.simulate.simulate``, so the touches are
exactly the ones the engine decides, holdout included, and writes what the member
workflows would have written: the event log, the members snapshot and the touches
ledger, one statement per table per chunk of members.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from activities.delivery import _RECORD as TOUCH_INSERT
from activities.projection import _SNAPSHOT as SNAPSHOT_UPSERT
from activities.projection import snapshot_args, write_events
from tests.simulate import simulate
from workflows.events import MemberEvent, parse_event
from workflows.lifecycle import MemberState
from workflows.policy import PolicyConfig, in_holdout
from workflows.projection import LoggedEvent, ProjectionRequest, snapshot
from workflows.touches import TouchRecord

JST = ZoneInfo("Asia/Tokyo")
HORIZON = timedelta(days=730)  # each member's story is written this far past ``start``; ``load`` cuts it
ARRIVALS_OVER = 365  # days over which members arrive (their first event), so that monthly cohorts exist

# persona → share of members (SPEC §3 stages; the seed's 2-step marketing and 定期 flow)
PERSONAS: dict[str, float] = {
    "sample": 0.22,  # 無料サンプル請求: 30–40 % go on to buy the main product
    "trial": 0.12,  # 初回割のお試し (trial lines only)
    "normal": 0.24,  # 通常購入, stops after F1, F2 or F3, fewer at each step
    "loyal": 0.10,  # monthly repeaters with an occasional cross line
    "subscriber": 0.22,  # 定期: some pause, some resume, some churn
    "reactivated": 0.10,  # dormant 90+ days, then buys again
}


@dataclass(frozen=True)
class Product:
    sku: str
    price: int  # 通常価格
    subscription_price: int  # 定期価格


PRODUCTS = (
    Product("KOSO-30", 3980, 3480),
    Product("COLLAGEN-30", 4980, 4480),
    Product("AOJIRU-30", 2980, 2980),
    Product("SERUM-30", 5980, 4980),
)
PRODUCT_WEIGHTS = (0.4, 0.25, 0.2, 0.15)
CROSS_PRODUCTS = (Product("LACTO-30", 2980, 2980), Product("VITAMIN-C-30", 3480, 3480))
TRIAL_PRICE = 2980
SIGNALS = ("cancel_page_viewed", "skip_requested", "complaint")
# The chance a subscription goes on after its n-th delivery (the big drop is after the 1st and 2nd).
CONTINUES_AFTER = {1: 0.62, 2: 0.75, 3: 0.85}
CONTINUES_LATER = 0.92
# Scenarios with a parcel insert or a call-centre task reach members without marketing consent.
REACHES_EVERYONE = frozenset({"S01", "S03", "S12"})


def personas(members: int, seed: int) -> list[str]:
    """Each member's persona, in member order: exact proportions (largest remainder), shuffled."""
    quotas = {name: share * members for name, share in PERSONAS.items()}
    counts = {name: int(q) for name, q in quotas.items()}
    for name in sorted(quotas, key=lambda n: counts[n] - quotas[n])[: members - sum(counts.values())]:
        counts[name] += 1
    drawn = [name for name, n in counts.items() for _ in range(n)]
    random.Random(f"{seed}:personas").shuffle(drawn)
    return drawn


def generate(members: int, seed: int, start: datetime, *, arrivals_over: int = ARRIVALS_OVER,
             ) -> list[list[MemberEvent]]:
    """``members`` members' event streams in arrival order, their first events spread over a year."""
    rng = random.Random(seed)
    streams = []
    for n, persona in enumerate(personas(members, seed), start=1):
        first = _shopping_time(start + timedelta(days=rng.randint(0, arrivals_over - 1)), rng)
        journey = _Journey(f"s{seed}-{n:04d}-{persona}", rng, start + HORIZON)
        journey.register(first)
        _STORIES[persona](journey, first + timedelta(minutes=rng.randint(1, 30)))
        streams.append(journey.events())
    return streams


# --- one member's story ---------------------------------------------------------------


@dataclass
class _Journey:
    member_id: str
    rng: random.Random
    horizon: datetime
    reachable: bool = True  # a marketing touch can reach them (consent and an address)
    product: Product = PRODUCTS[0]
    raw: list[dict] = field(default_factory=list)
    orders: int = 0

    def add(self, type: str, at: datetime, **fields) -> bool:
        if at > self.horizon:
            return False
        self.raw.append({"type": type, "event_id": f"{self.member_id}-e{len(self.raw) + 1:03d}",
                         "member_id": self.member_id, "occurred_at": at.isoformat(), **fields})
        return True

    def events(self) -> list[MemberEvent]:
        self.raw.sort(key=lambda e: e["occurred_at"])  # stable: same-moment events keep their order
        return [parse_event(e) for e in self.raw]

    def treated(self, scenario: str) -> bool:
        """Would the engine actually reach this member in ``scenario`` (not held out, reachable)?"""
        reachable = self.reachable or scenario in REACHES_EVERYONE
        return reachable and not in_holdout(self.member_id, scenario, PolicyConfig())

    def chance(self, scenario: str, treated: float, held_out: float) -> bool:
        return self.rng.random() < (treated if self.treated(scenario) else held_out)

    def register(self, at: datetime) -> None:
        rng = self.rng
        kind = rng.choices(["line", "email", "no_consent", "offline"], [0.55, 0.25, 0.08, 0.12])[0]
        self.product = rng.choices(PRODUCTS, PRODUCT_WEIGHTS)[0]
        self.reachable = kind != "no_consent"
        consent = {"email": kind in ("line", "email"), "line": kind == "line", "sms": False,
                   "push": False, "dm": kind == "offline"}
        reachable = {"line": ["line", "email", "dm"], "email": ["email", "dm"],
                     "no_consent": ["email"], "offline": ["dm"]}[kind]
        self.add("member_registered", at, sales_channel="offline" if kind == "offline" else "online",
                 consent=consent, reachable=reachable)
        if kind == "email" and rng.random() < 0.06:  # 配信停止 some months later
            self.add("consent_changed", at + timedelta(days=rng.randint(60, 300)), channel="email", granted=False)

    def order(self, at: datetime, lines: list[dict], subscription_id: str | None = None,
              may_cancel: bool = True) -> datetime | None:
        """Place (and ship) an order; returns its anchor, or None past the horizon.

        A few orders are cancelled (受取拒否・キャンセル) and placed again a few days later.
        """
        self.orders += 1
        order_id = f"{self.member_id}-o{self.orders:02d}"
        fields = {"order_id": order_id, "lines": lines}
        if subscription_id:
            fields["subscription_id"] = subscription_id
        if not self.add("order_placed", at, **fields):
            return None
        if may_cancel and self.rng.random() < 0.03:
            self.add("order_cancelled", at + timedelta(hours=self.rng.randint(2, 20)), order_id=order_id)
            return self.order(at + timedelta(days=self.rng.randint(1, 4)), lines, subscription_id, False)
        shipped = at + timedelta(days=self.rng.choice([1, 1, 2, 3]), hours=self.rng.randint(0, 6))
        self.add("order_shipped", shipped, order_id=order_id)
        return shipped

    def main(self, at: datetime, *, cross: Product | None = None, quantity: int = 1) -> datetime | None:
        lines = [_line(self.product.sku, "main", self.product.price, quantity)]
        if cross is not None:
            lines.append(_line(cross.sku, "cross", cross.price))
        return self.order(at, lines)

    def reorder_after(self, anchor: datetime, supply_days: int = 30) -> datetime:
        """Around run-out: a few days early or up to ten late, at a time people shop."""
        return _shopping_time(anchor + timedelta(days=supply_days + self.rng.randint(-5, 10)), self.rng)


def _line(sku: str, role: str, price: int, quantity: int = 1, days_supply: int = 30) -> dict:
    return {"sku": sku, "role": role, "quantity": quantity, "days_supply": days_supply, "unit_price": price}


def _shopping_time(day: datetime, rng: random.Random) -> datetime:
    local = day.astimezone(JST).date()
    return datetime.combine(local, time(rng.randint(7, 23), rng.randint(0, 59)), tzinfo=JST)


def _sample(j: _Journey, at: datetime) -> None:
    order_id = f"{j.member_id}-s1"
    j.add("sample_requested", at, order_id=order_id, sku=j.product.sku.replace("-30", "-SAMPLE"), days_supply=7)
    j.add("order_shipped", at + timedelta(days=j.rng.randint(1, 2)), order_id=order_id)
    if j.chance("S01", treated=0.40, held_out=0.22):  # 本商品引上率 30–40 %
        _first_main(j, _shopping_time(at + timedelta(days=j.rng.randint(6, 30)), j.rng))


def _trial(j: _Journey, at: datetime) -> None:
    supply = j.rng.choice([30, 30, 30, 14])
    anchor = j.order(at, [_line(j.product.sku, "trial", TRIAL_PRICE, days_supply=supply)])
    if anchor and j.chance("S02", treated=0.50, held_out=0.30):
        _first_main(j, _shopping_time(anchor + timedelta(days=supply + j.rng.randint(-5, 20)), j.rng))


def _first_main(j: _Journey, at: datetime) -> None:
    """A sample or trial that converted: a quarter go straight to 定期, the rest buy as normal buyers."""
    if j.rng.random() < 0.25:
        _subscription(j, at)
    else:
        _normal(j, at)


def _normal(j: _Journey, at: datetime) -> None:
    """F1, then F2 and F3 with falling drop-off; S03/S04 help a little."""
    anchor = j.main(at)
    for scenario, treated, held_out in (("S03", 0.52, 0.35), ("S04", 0.45, 0.30)):
        if anchor is None or not j.chance(scenario, treated, held_out):
            return
        anchor = j.main(j.reorder_after(anchor))


def _loyal(j: _Journey, at: datetime) -> None:
    """Monthly repeaters; some add a cross line now and then, sooner when S09 reached them."""
    likes_cross = j.rng.random() < 0.6
    anchor, f, supply = j.main(at), 1, 30
    while anchor is not None and j.rng.random() > 0.03:
        f += 1
        cross = None
        if likes_cross and f >= 3:
            odds = 0.35 if j.treated("S09") else 0.2
            if j.rng.random() < odds:
                cross = j.rng.choice(CROSS_PRODUCTS)
        at = j.reorder_after(anchor, supply)
        supply = 60 if j.rng.random() < 0.1 else 30  # まとめ買い now and then
        anchor = j.main(at, cross=cross, quantity=supply // 30)


def _reactivated(j: _Journey, at: datetime) -> None:
    """One to three purchases, 90+ days of silence, then back (sooner when S11's offer reached them)."""
    anchor = j.main(at)
    for _ in range(j.rng.choice([0, 1, 2])):
        if anchor is not None:
            anchor = j.main(j.reorder_after(anchor))
    if anchor is None:
        return
    soon = j.chance("S11", treated=0.65, held_out=0.3)
    gap = j.rng.randint(92, 115) if soon else j.rng.randint(130, 220)
    anchor = j.main(_shopping_time(anchor + timedelta(days=gap), j.rng))
    for _ in range(j.rng.choice([0, 1, 2, 3])):
        if anchor is not None:
            anchor = j.main(j.reorder_after(anchor))


def _subscriber(j: _Journey, at: datetime) -> None:
    """定期 from the first order (初回から定期) or after one or two normal purchases (S06)."""
    if j.rng.random() < 0.4:
        anchor = j.main(at)
        if anchor is not None and j.rng.random() < 0.4:
            anchor = j.main(j.reorder_after(anchor))
        if anchor is None:
            return
        at = j.reorder_after(anchor) - timedelta(days=2 if j.treated("S06") else 0)
    _subscription(j, at)


def _subscription(j: _Journey, at: datetime) -> None:
    """Deliveries every interval until the member stops: churn sign, longer interval, pause or cancel."""
    rng, sub = j.rng, f"{j.member_id}-sub1"
    interval = rng.choices([30, 45, 60], [0.8, 0.12, 0.08])[0]
    if not j.add("subscription_started", at, subscription_id=sub, sku=j.product.sku, interval_days=interval):
        return
    delivery, lengthened = 0, False
    while True:
        delivery += 1
        line = _line(j.product.sku, "main", j.product.subscription_price, days_supply=interval)
        if j.order(at, [line], subscription_id=sub, may_cancel=False) is None:
            return
        last, at = at, at + timedelta(days=interval)
        if rng.random() < CONTINUES_AFTER.get(delivery, CONTINUES_LATER):
            continue

        def after(lo: int, hi: int) -> datetime:
            return last + timedelta(days=rng.randint(lo, hi), hours=rng.randint(0, 12))

        way = rng.choices(["signal", "lengthen", "pause", "cancel"], [0.4, 0.2, 0.25, 0.15])[0]
        if way == "lengthen" and not lengthened:  # 周期延長: a churn sign of its own (S12)
            lengthened, interval = True, interval + rng.choice([15, 30])
            j.add("subscription_interval_changed", after(3, 20), subscription_id=sub, interval_days=interval)
            at = last + timedelta(days=interval)
            if rng.random() < 0.5:
                continue
            j.add("subscription_cancelled", after(interval - 12, interval - 3), subscription_id=sub)
            return
        if way == "signal":  # 解約兆候: the cancel page, a skip request, a complaint
            signal_at = after(5, interval - 8)
            j.add("churn_signal", signal_at, signal=rng.choice(SIGNALS))
            if j.chance("S12", treated=0.35, held_out=0.10):  # the call centre saved them
                continue
            j.add("subscription_cancelled", signal_at + timedelta(days=rng.randint(1, 6)), subscription_id=sub)
            return
        if way == "pause":  # 休止: S07 asks on day 60 of the pause
            paused_at = after(5, interval - 3)
            j.add("subscription_paused", paused_at, subscription_id=sub)
            if j.chance("S07", treated=0.45, held_out=0.2):
                resumed_at = paused_at + timedelta(days=rng.randint(61, 80))
                j.add("subscription_resumed", resumed_at, subscription_id=sub)
                at = _shopping_time(resumed_at + timedelta(days=1), rng)
                continue
            if rng.random() < 0.4:
                j.add("subscription_cancelled", paused_at + timedelta(days=rng.randint(90, 150)),
                      subscription_id=sub)
            return
        j.add("subscription_cancelled", after(5, interval - 3), subscription_id=sub)
        return


_STORIES = {
    "sample": _sample, "trial": _trial, "normal": _normal, "loyal": _loyal,
    "subscriber": _subscriber, "reactivated": _reactivated,
}


# --- loading -----------------------------------------------------------------------------


async def load(pool: asyncpg.Pool, members_events: list[list[MemberEvent]], until: datetime, *,
               config: PolicyConfig = PolicyConfig(), chunk: int = 100) -> None:
    """What the member workflows would have written by ``until``: events, snapshots, touches."""
    for first in range(0, len(members_events), chunk):
        runs = [_run(events, until, config) for events in members_events[first:first + chunk]]
        runs = [r for r in runs if r is not None]
        logged = [e for _, events, _ in runs for e in events]
        if not logged:
            continue
        async with pool.acquire() as conn, conn.transaction():
            # write_events is one statement for a whole batch; the request's own member is a formality.
            await write_events(conn, ProjectionRequest(
                member_id=runs[0][0].member_id, version=1, events=tuple(logged),
                snapshot=snapshot(runs[0][0], None)))
            await conn.executemany(SNAPSHOT_UPSERT, [
                snapshot_args(state.member_id, 1, snapshot(state, None)) for state, _, _ in runs])
            await conn.executemany(TOUCH_INSERT, [
                _touch_row(state.member_id, record) for state, _, records in runs for record in records])


def _run(events: list[MemberEvent], until: datetime, config: PolicyConfig,
         ) -> tuple[MemberState, list[LoggedEvent], list[TouchRecord]] | None:
    """One member through the engine's core, up to ``until``."""
    arrived = [e for e in events if e.occurred_at <= until]
    if not arrived:
        return None
    first = min(e.occurred_at for e in arrived)
    state, records = simulate(arrived, (until - first).days + 1, config)
    # The clock stands at ``until``: dormancy is a matter of the clock, and nothing later happened.
    state = state.model_copy(update={"as_of": until})
    logged = [LoggedEvent(seq=n, event=e) for n, e in enumerate(arrived, start=1)]
    return state, logged, [r for r in records if r.decided_at <= until]


def _touch_row(member_id: str, record: TouchRecord) -> tuple:
    """The columns the delivery activity records for a touch."""
    return (record.key, member_id, record.scenario, record.step, record.occurrence,
            record.channel.value if record.channel else None, record.variant, record.outcome.value,
            record.reason, record.due_at, record.decided_at)
