"""Every report on a small fixed dataset whose numbers are worked out by hand here.

Each test writes its own members into its own fresh database (see conftest), the
event log through ``activities.projection.write_events`` and the touches ledger
with a plain INSERT, then checks the report's rows against the hand count.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from starter.reports import (
    CPM_SEGMENTS, REPORTS, ReportError, _bucket_sql, run_report,
)
from tests.factories import days, event, jst, order, sample, shipped
from tests.reports.conftest import touch, write, write_touches
from worker.shop_config import parse_shop_config
from workflows.policy import PolicyConfig, bucket, variant_of
from workflows.rules import Rules

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cancelled(member_id, at, order_id):
    return event("order_cancelled", member_id, at, order_id=order_id)


def registered(member_id, at):
    return event("member_registered", member_id, at)


def sub_event(kind, member_id, at, subscription_id, **fields):
    return event(f"subscription_{kind}", member_id, at, subscription_id=subscription_id, **fields)


def by(rows, *keys):
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def members_with_bucket(scenario: str, holdout: bool, count: int, prefix: str) -> list[str]:
    """Member ids the policy's hash puts in (or out of) the scenario's holdout group."""
    found = []
    for i in range(10_000):
        member_id = f"{prefix}{i}"
        if (bucket(member_id, scenario, "holdout") < PolicyConfig().holdout_percent) == holdout:
            found.append(member_id)
            if len(found) == count:
                return found
    raise AssertionError("no such member ids")


# --- scenarios (KPI + holdout lift) ---------------------------------------------------------

T0 = jst(2026, 1, 10, 10)  # every S03 entry's first touch (the F1 purchase, thanks insert at once)


def s03_entry(member_id: str, outcomes: tuple[str, str, str]) -> list[tuple]:
    """The three S03 touches of the member's F1 (order f1 at T0): insert at once, day 15, day 25."""
    steps = (("thanks_insert", T0), ("testimonial", T0 + days(15)), ("survey", T0 + days(25)))
    return [touch(member_id, "S03", step, f"{member_id}-f1", outcome, at)
            for (step, at), outcome in zip(steps, outcomes)]


async def test_scenarios_kpi_and_holdout_lift_by_hand(report_pool):
    p = "sc-"
    sent3, hold3 = ("sent", "sent", "sent"), ("holdout", "holdout", "holdout")
    events, touches = [], []
    for m in ("t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "h1", "h2"):
        events.append(order(p + m, T0, f"{p}{m}-f1"))
    # Treatment (8 entries):
    touches += s03_entry(p + "t1", sent3)
    events.append(order(p + "t1", T0 + days(30), "sc-t1-f2"))  # converted (day 30)
    touches += s03_entry(p + "t2", sent3)
    events.append(order(p + "t2", T0 + days(60), "sc-t2-f2"))  # converted (day 60: the window's last moment)
    touches += s03_entry(p + "t3", sent3)
    events.append(order(p + "t3", T0 + days(45), "sc-t3-f2"))  # converted
    touches += s03_entry(p + "t4", sent3)
    events.append(order(p + "t4", T0 + days(61), "sc-t4-f2"))  # too late: not converted
    touches += s03_entry(p + "t5", sent3)
    events += [order(p + "t5", T0 + days(20), "sc-t5-f2"),  # cancelled (and the cancellation arrives first)
               cancelled(p + "t5", T0 + days(22), "sc-t5-f2")]
    events.insert(0, events.pop())  # the cancellation first in the log
    touches += s03_entry(p + "t6", ("suppressed", "suppressed", "suppressed"))  # no channel: treated, not touched
    events.append(order(p + "t6", T0 + days(40), "sc-t6-f2"))  # converted
    touches += s03_entry(p + "t7", ("sent", "cancelled", "cancelled"))  # exit by F2 on day 10
    events.append(order(p + "t7", T0 + days(10), "sc-t7-f2"))  # converted
    touches += s03_entry(p + "t8", sent3)
    events.append(order(p + "t8", T0 + days(20), "sc-t8-x", role="cross"))  # a cross-only order: not F2
    # Holdout (2 entries):
    touches += s03_entry(p + "h1", hold3)  # never buys again
    touches += s03_entry(p + "h2", ("holdout", "cancelled", "cancelled"))  # F2 on day 10: still holdout
    events.append(order(p + "h2", T0 + days(10), "sc-h2-f2"))  # converted
    # Outside January: a February entry, left out by --from/--to.
    events.append(order(p + "late", jst(2026, 2, 10), "sc-late-f1"))
    touches.append(touch(p + "late", "S03", "thanks_insert", "sc-late-f1", "sent", jst(2026, 2, 10)))
    await write(report_pool, events)
    await write_touches(report_pool, touches)

    report = await run_report(report_pool, "scenarios", date(2026, 1, 1), date(2026, 1, 31))
    assert report.columns == ["scenario", "name", "variant", "run", "kpi", "window_days", "entered", "holdout",
                              "touched", "suppressed", "suppressed_by", "expired", "converted", "rate",
                              "holdout_converted", "holdout_rate", "lift", "lift_ci_low", "lift_ci_high"]
    s03 = by(report.rows, "scenario")["S03"]
    # treatment 8: converted t1 t2 t3 t6 t7 = 5 → 0.625; touched: all but t6 = 7
    # holdout 2: converted h2 = 1 → 0.5; lift = 0.125
    # Newcombe's hybrid score interval, z = 1.96, z² = 3.8416:
    # Wilson 5/8:  centre (0.625 + 0.2401)/1.4802 = 0.58445, half 1.96·√(0.029297 + 0.015006)/1.4802
    #              = 0.278712 → [0.30574, 0.86316]
    # Wilson 1/2:  centre 0.5, half 1.96·√(0.125 + 0.2401)/2.9208 = 0.405471 → [0.094529, 0.905471]
    # low  = 0.125 − √((0.625 − 0.30574)² + (0.905471 − 0.5)²) = 0.125 − √0.266332 = −0.391074
    # high = 0.125 + √((0.86316 − 0.625)² + (0.5 − 0.094529)²) = 0.125 + √0.221127 = 0.595241
    assert {k: s03[k] for k in ("name", "variant", "kpi", "window_days", "entered", "holdout", "touched",
                                "converted", "rate", "holdout_converted", "holdout_rate", "lift")} == {
        "name": "F1→F2転換", "variant": "-", "kpi": "F2転換率", "window_days": 60, "entered": 10, "holdout": 2,
        "touched": 7, "converted": 5, "rate": 0.625, "holdout_converted": 1, "holdout_rate": 0.5, "lift": 0.125}
    assert round(s03["lift_ci_low"], 3) == -0.391
    assert round(s03["lift_ci_high"], 3) == 0.595
    # Every scenario has a row (S08 one per variant); those nobody entered have no rates.
    assert [(r["scenario"], r["variant"]) for r in report.rows] == [
        *((f"S{i:02}", "-") for i in range(1, 8)), ("S08", "gift"), ("S08", "secret_sale"),
        *((f"S{i:02}", "-") for i in range(9, 13))]
    s04 = by(report.rows, "scenario")["S04"]
    assert (s04["entered"], s04["rate"], s04["lift"], s04["lift_ci_low"]) == (0, None, None, None)

    everything = by((await run_report(report_pool, "scenarios")).rows, "scenario")["S03"]
    assert (everything["entered"], everything["touched"], everything["converted"]) == (11, 8, 5)


async def test_scenarios_groups_by_the_policy_hash_when_no_touch_was_decided(report_pool):
    """Entries whose touches all expired: the holdout / variant hash decides. All cancelled: left out."""
    at = jst(2026, 3, 1, 10)
    held = members_with_bucket("S06", True, 1, "hx-")[0]
    treated = members_with_bucket("S06", False, 2, "tx-")
    rows = [touch(held, "S06", "upsell", "o1", "expired", at),
            touch(treated[0], "S06", "upsell", "o1", "expired", at),
            touch(treated[1], "S06", "upsell", "o1", "cancelled", at)]  # exited before the step: not an entry
    # S08: two sent 'gift', one sent 'secret_sale' (converts), one holdout (converts too late),
    # one expired (its variant by the hash), one cancelled (left out).
    s08 = members_with_bucket("S08", False, 40, "v-")
    gift = [m for m in s08 if variant_of(m, "S08") == "gift"]
    sale = [m for m in s08 if variant_of(m, "S08") == "secret_sale"]
    s08_holdout = members_with_bucket("S08", True, 1, "vh-")[0]
    rows += [touch(gift[0], "S08", "loyalty_offer", "o4", "sent", at, variant="gift"),
             touch(gift[1], "S08", "loyalty_offer", "o4", "sent", at, variant="gift"),
             touch(gift[2], "S08", "loyalty_offer", "o4", "cancelled", at),
             touch(sale[0], "S08", "loyalty_offer", "o4", "sent", at, variant="secret_sale"),
             touch(s08_holdout, "S08", "loyalty_offer", "o4", "holdout", at),
             touch(sale[1], "S08", "loyalty_offer", "o4", "expired", at)]
    await write_touches(report_pool, rows)
    await write(report_pool, [order(sale[0], at + days(5), "v-o5"), order(s08_holdout, at + days(70), "vh-o5"),
                              order(gift[0], at - days(1), "v-o3")])  # before the entry: not a conversion

    report = by((await run_report(report_pool, "scenarios")).rows, "scenario", "variant")
    s06 = report[("S06", "-")]
    assert (s06["entered"], s06["holdout"], s06["touched"], s06["converted"]) == (2, 1, 0, 0)
    assert (s06["rate"], s06["holdout_rate"], s06["lift"]) == (0.0, 0.0, 0.0)
    # 0 of 1 against 0 of 1 says almost nothing: Wilson [0, 1.9208/4.8416 × 2 = 0.79346] for each,
    # so the interval is ∓0.79346 — not the point [0, 0] a normal approximation would claim.
    assert (s06["lift_ci_low"], s06["lift_ci_high"]) == (-0.7935, 0.7935)
    g, s = report[("S08", "gift")], report[("S08", "secret_sale")]
    # gift: 2 treated + the shared holdout of 1; secret_sale: 2 treated (one by hash) + the same holdout
    assert (g["entered"], g["holdout"], g["touched"], g["converted"], g["rate"]) == (3, 1, 2, 0, 0.0)
    assert (s["entered"], s["holdout"], s["touched"], s["converted"], s["rate"]) == (3, 1, 1, 1, 0.5)
    # the holdout member bought on day 70: outside S08's 60 days
    assert (s["holdout_converted"], s["holdout_rate"], s["lift"]) == (0, 0.0, 0.5)
    # Wilson 1/2 = [0.094529, 0.905471], Wilson 0/1 = [0, 0.79346]:
    # low = 0.5 − √(0.405471² + 0.79346²) = 0.5 − 0.891059; high = 0.5 + √(0.405471² + 0) = 0.905471.
    # (A normal approximation would say [−0.193, 1.193]: beyond what a rate can be.)
    assert (round(s["lift_ci_low"], 3), round(s["lift_ci_high"], 3)) == (-0.391, 0.905)


V1_AT = jst(2026, 2, 1)  # the shop's version 1 (holdout 20 %, S06 variants letter 3 : call 1) in force from here


async def apply_in_february(pool) -> Rules:
    """Version 1 as if applied on 1 February (a past the ledger below lies after): the example
    shop with a 20 % holdout and two weighted S06 variants. Written as ``config apply`` stores it."""
    text = (EXAMPLES / "shop.toml").read_text(encoding="utf-8").replace("holdout_percent = 10", "holdout_percent = 20")
    loaded = parse_shop_config(text + '\n[scenarios.S06]\nvariants = { letter = 3, call = 1 }\n', "shop.toml", EXAMPLES)
    await pool.execute(
        "INSERT INTO config_versions (version, digest, applied_at, effective_at, source, body, templates)"
        " VALUES (1, $1, $2, $2, $3, $4::jsonb, '{}')",
        loaded.digest, V1_AT, loaded.source, json.dumps(loaded.config.model_dump(mode="json")))
    return loaded.config.rules(1)


def members_between(scenario: str, low: int, high: int, count: int, prefix: str) -> list[str]:
    """Member ids whose holdout bucket is in [low, high)."""
    found = [m for m in (f"{prefix}{i}" for i in range(10_000)) if low <= bucket(m, scenario, "holdout") < high]
    return found[:count]


async def test_scenarios_read_the_holdout_share_and_variants_in_force(report_pool):
    """A shop that holds out 20 % from February: an entry nobody decided is grouped by the share in
    force at its moment (20 % from 1 February, the SPEC's 10 % before), not by a constant; S06's
    own variants, weighted 3 : 1, get a row each."""
    rules = await apply_in_february(report_pool)
    at = jst(2026, 3, 1, 10)  # under version 1
    h20, early = members_between("S03", 10, 20, 2, "b1x-")  # held out under 20 %, not under 10 %
    h10 = members_between("S03", 0, 10, 1, "b0x-")[0]
    t1, t2 = members_between("S03", 20, 100, 2, "b2x-")
    rows = [touch(h20, "S03", "testimonial", "f1", "expired", at),
            touch(h10, "S03", "testimonial", "f1", "expired", at),
            touch(t1, "S03", "testimonial", "f1", "expired", at),
            touch(t2, "S03", "testimonial", "f1", "sent", at),
            touch(early, "S03", "testimonial", "f1", "expired", jst(2026, 1, 15, 10))]  # 10 % then: treatment
    # S06 under version 1: a letter and a call sent, a holdout recorded, one expired whose
    # weighted variant hash says call; one sent in January, before any variant: '-'.
    treated = members_between("S06", 20, 100, 200, "u-")
    expired_call = next(m for m in treated if variant_of(m, "S06", rules) == "call")
    letter, call, held, before = "u6-letter", "u6-call", members_between("S06", 0, 20, 1, "u6h-")[0], "u6-pre"
    rows += [touch(letter, "S06", "upsell", "o1", "sent", at, variant="letter"),
             touch(call, "S06", "upsell", "o1", "sent", at, variant="call"),
             touch(held, "S06", "upsell", "o1", "holdout", at, reason="holdout:20%"),
             touch(expired_call, "S06", "upsell", "o1", "expired", at),
             touch(before, "S06", "upsell", "o1", "sent", jst(2026, 1, 15, 10))]
    await write_touches(report_pool, rows)
    await write(report_pool, [
        order(h20, at + days(10), "b-h20"), order(t1, at + days(20), "b-t1"),
        order(early, jst(2026, 1, 15, 10) + days(30), "b-early"),
        sub_event("started", letter, at + days(5), "s-l", sku="KOSO-30", interval_days=30),
        sub_event("started", held, at + days(3), "s-h", sku="KOSO-30", interval_days=30),
    ])

    report = by((await run_report(report_pool, "scenarios")).rows, "scenario", "variant")
    s03 = report[("S03", "-")]
    # treatment: t1 (converted), t2 (sent), early (converted; 10 % in January) = 3, 2 converted;
    # holdout: h20 (converted; 20 % in March), h10 = 2, 1 converted.
    # (A fixed 10 % would have put h20 in treatment: 3 of 4 against 0 of 1, a lift of 0.75.)
    assert {k: s03[k] for k in ("entered", "holdout", "touched", "converted", "rate", "holdout_converted",
                                "holdout_rate", "lift")} == {
        "entered": 5, "holdout": 2, "touched": 1, "converted": 2, "rate": 0.6667, "holdout_converted": 1,
        "holdout_rate": 0.5, "lift": 0.1667}
    # S06: one row per variant version 1 declares, and '-' for January's entry without one.
    assert [v for (sc, v) in report if sc == "S06"] == ["-", "call", "letter"]
    dash, c, l = report[("S06", "-")], report[("S06", "call")], report[("S06", "letter")]
    shape = ("entered", "holdout", "touched", "converted", "rate", "holdout_converted", "holdout_rate", "lift")
    # the holdout (held, converted) is the shared control of each row: 1 of 1
    assert tuple(dash[k] for k in shape) == (2, 1, 1, 0, 0.0, 1, 1.0, -1.0)
    assert tuple(c[k] for k in shape) == (3, 1, 1, 0, 0.0, 1, 1.0, -1.0)  # call sent + expired_call by hash
    assert tuple(l[k] for k in shape) == (2, 1, 1, 1, 1.0, 1, 1.0, 0.0)
    assert variant_of(expired_call, "S06") is None  # without the configuration S06 has no variants


async def test_the_sql_bucket_is_the_policy_bucket(report_pool):
    ids = [f"m-{i}" for i in range(300)] + ["会員-α", "x" * 200]
    rows = await report_pool.fetch(
        f"SELECT m, s, {_bucket_sql('m', 's', chr(39) + 'holdout' + chr(39))} AS b"
        " FROM unnest($1::text[]) m, unnest(ARRAY['S03', 'S08']) s", ids)
    assert len(rows) == 2 * len(ids)
    assert all(r["b"] == bucket(r["m"], r["s"], "holdout") for r in rows)


# --- funnel ---------------------------------------------------------------------------------


async def test_funnel_by_hand(report_pool):
    p = "fu-"
    events = [
        # a: sample → F1 (+10 d) → F2 (+30) → F3 (+30) → F4 (+30)
        sample(p + "a", jst(2026, 1, 1), "a-s"), order(p + "a", jst(2026, 1, 11), "a-1"),
        order(p + "a", jst(2026, 2, 10), "a-2"), order(p + "a", jst(2026, 3, 12), "a-3"),
        order(p + "a", jst(2026, 4, 11), "a-4"),
        # b: trial → F1 (+20) → F2 (+40)
        order(p + "b", jst(2026, 1, 5), "b-t", role="trial", price=500),
        order(p + "b", jst(2026, 1, 25), "b-1"), order(p + "b", jst(2026, 3, 6), "b-2"),
        # c: a sample, nothing else
        sample(p + "c", jst(2026, 1, 3), "c-s"),
        # d: straight to F1, F2 (+20), F3 (+40)
        order(p + "d", jst(2026, 1, 10), "d-1"), order(p + "d", jst(2026, 1, 30), "d-2"),
        order(p + "d", jst(2026, 3, 11), "d-3"),
        # e: F1, then a cancelled order
        order(p + "e", jst(2026, 1, 15), "e-1"), order(p + "e", jst(2026, 2, 14), "e-2"),
        cancelled(p + "e", jst(2026, 2, 15), "e-2"),
        # f: sample, a cancelled main order, then F1 (+30 from the sample)
        sample(p + "f", jst(2026, 1, 2), "f-s"), order(p + "f", jst(2026, 1, 10), "f-x"),
        cancelled(p + "f", jst(2026, 1, 11), "f-x"), order(p + "f", jst(2026, 2, 1), "f-1"),
        # g: registered only
        registered(p + "g", jst(2026, 1, 1)),
        # h: first seen in December: outside the January-onwards cohort
        registered(p + "h", jst(2025, 12, 20)), order(p + "h", jst(2026, 1, 20), "h-1"),
        # i: a cancelled trial does not count as a step
        order(p + "i", jst(2026, 1, 4), "i-t", role="trial"), cancelled(p + "i", jst(2026, 1, 5), "i-t"),
        # j: a shipment before its order arrives, then the order: counts once
        shipped(p + "j", jst(2026, 1, 21), "j-1"), order(p + "j", jst(2026, 1, 20), "j-1"),
    ]
    await write(report_pool, events)

    report = await run_report(report_pool, "funnel", start=date(2026, 1, 1))
    assert report.columns == ["step", "label", "members", "from_previous", "rate", "median_days"]
    rows = by(report.rows, "step")
    assert list(rows) == ["sample_or_trial", "f1", "f2", "f3", "established"]
    # sample_or_trial: a c f (samples) + b (trial) = 4
    # f1: a b d e f j = 6; via a sample/trial first: a (10 d) b (20 d) f (30 d) = 3 → 3/4, median 20
    # f2: a (30) b (40) d (20) = 3 → 3/6 = 0.5, median 30
    # f3: a (30) d (40) = 2 → 2/3, median 35
    # established: a (30) = 1 → 1/2, median 30
    assert [(r["members"], r["from_previous"], r["rate"], r["median_days"]) for r in report.rows] == [
        (4, None, None, None),
        (6, 3, 0.75, 20.0),
        (3, 3, 0.5, 30.0),
        (2, 2, 0.6667, 35.0),
        (1, 1, 0.5, 30.0),
    ]
    # Without the cohort filter, h joins F1.
    everyone = by((await run_report(report_pool, "funnel")).rows, "step")
    assert everyone["f1"]["members"] == 7


# --- 定期フロー ------------------------------------------------------------------------------


async def test_subscription_flow_by_hand(report_pool):
    p = "sf-"
    events = [
        # January cohort
        sub_event("started", p + "m1", jst(2026, 1, 5), "s1", sku="KOSO-30", interval_days=30),
        order(p + "m1", jst(2026, 1, 5), "s1-1", subscription_id="s1"),
        order(p + "m1", jst(2026, 2, 4), "s1-2", subscription_id="s1"),
        order(p + "m1", jst(2026, 3, 6), "s1-3", subscription_id="s1"),  # s1: 3 deliveries
        sub_event("started", p + "m2", jst(2026, 1, 20), "s2", sku="KOSO-30", interval_days=30),
        order(p + "m2", jst(2026, 1, 20), "s2-1", subscription_id="s2"),
        order(p + "m2", jst(2026, 2, 19), "s2-2", subscription_id="s2"),
        cancelled(p + "m2", jst(2026, 2, 20), "s2-2"),
        order(p + "m2", jst(2026, 3, 20), "s2-3", subscription_id="s2"),  # s2: 2 (one cancelled)
        sub_event("started", p + "m4", jst(2026, 1, 10), "s4", sku="KOSO-30", interval_days=30),
        sub_event("cancelled", p + "m4", jst(2026, 1, 12), "s4"),  # s4: 0 deliveries
        order(p + "m4", jst(2026, 1, 15), "m4-normal"),  # not a subscription order
        # February cohort
        order(p + "m3", jst(2026, 2, 1, 0, 30), "s3-1", subscription_id="s3"),  # no started event;
        order(p + "m3", jst(2026, 3, 3), "s3-2", subscription_id="s3"),  # 1 Feb 00:30 JST is January in UTC
        sub_event("started", p + "m5", jst(2026, 2, 10), "s5", sku="KOSO-30", interval_days=30),
        order(p + "m5", jst(2026, 2, 8), "s5-1", subscription_id="s5"),  # s5: 1, first order before the event
        sub_event("started", p + "m1", jst(2026, 2, 15), "s6", sku="AOJIRU-30", interval_days=30),
        *(order(p + "m1", jst(2026, 2, 15) + days(30 * k), f"s6-{k}", subscription_id="s6") for k in range(4)),
    ]
    await write(report_pool, events)

    # A year on, every delivery of these cohorts has come due.
    report = await run_report(report_pool, "subscription-flow", as_of=jst(2027, 6, 1))
    assert report.columns == ["cohort", "started", *(f"d{k}" for k in range(1, 13))]
    rows = by(report.rows, "cohort")
    assert list(rows) == ["2026-01", "2026-02", "合計"]
    shares = {c: [r[f"d{k}"] for k in range(1, 6)] for c, r in rows.items()}
    # January: s1 (3) s2 (2) s4 (0): ≥1 2/3, ≥2 2/3, ≥3 1/3, ≥4 0
    assert rows["2026-01"]["started"] == 3
    assert shares["2026-01"] == [0.6667, 0.6667, 0.3333, 0.0, 0.0]
    # February: s3 (2) s5 (1) s6 (4): 3/3, 2/3, 1/3, 1/3, 0
    assert rows["2026-02"]["started"] == 3
    assert shares["2026-02"] == [1.0, 0.6667, 0.3333, 0.3333, 0.0]
    # all six: 5/6, 4/6, 2/6, 1/6, 0
    assert rows["合計"]["started"] == 6
    assert shares["合計"] == [0.8333, 0.6667, 0.3333, 0.1667, 0.0]
    assert rows["2026-02"]["d12"] == 0.0
    # On 1 April 2026 no February subscription's 12th delivery was due: unknown, not lost.
    early = by((await run_report(report_pool, "subscription-flow", as_of=jst(2026, 4, 1))).rows, "cohort")
    assert early["2026-02"]["d1"] == 1.0
    assert early["2026-02"]["d12"] is None

    february = await run_report(report_pool, "subscription-flow", date(2026, 2, 1), date(2026, 2, 28))
    assert [r["cohort"] for r in february.rows] == ["2026-02", "合計"]


# --- RFM and CPM -----------------------------------------------------------------------------

AS_OF = jst(2026, 7, 1, 0)


def rfm_members(p: str) -> list:
    def mains(m, *ats, price=3980):
        return [order(p + m, at, f"{p}{m}-{i}", price=price) for i, at in enumerate(ats)]

    return [
        *mains("r1", jst(2026, 3, 1), jst(2026, 4, 1), jst(2026, 5, 1), jst(2026, 6, 15)),  # 15920
        *mains("r2", jst(2026, 6, 20)),
        order(p + "r2", jst(2026, 6, 25), "r2-x", role="cross", price=1000),  # revenue, not F: 4980
        order(p + "r2", jst(2026, 6, 26), "r2-c"), cancelled(p + "r2", jst(2026, 6, 27), "r2-c"),
        *mains("r3", jst(2026, 4, 1), jst(2026, 5, 20)),  # 7960
        *mains("r4", jst(2026, 4, 15)),  # 3980
        *mains("r5", jst(2026, 2, 1)),  # 3980
        *mains("r6", *(jst(2025, m, 1) for m in range(1, 7))),  # 23880
        sample(p + "r7", jst(2026, 6, 1), "r7-s"),  # no main purchase: not in RFM/CPM
        *mains("r8", jst(2026, 7, 10)),  # after as_of: not yet a customer
        *mains("r9", jst(2025, 6, 1), jst(2026, 1, 1), jst(2026, 6, 1), price=12000),  # 36000
        *mains("r10", jst(2025, 5, 1), jst(2026, 6, 10)),  # 7960
        *mains("r11", jst(2026, 5, 1), jst(2026, 6, 1), price=20000),  # 40000
    ]


async def test_rfm_by_hand(report_pool):
    await write(report_pool, rfm_members("rfm-"))
    report = await run_report(report_pool, "rfm", as_of=AS_OF)
    assert report.columns == ["r", "f", "segment", "members", "revenue", "avg_revenue", "avg_m"]
    # days since the latest main purchase on 2026-07-01 00:00: r1 15.5 → R5, r2 10.5 → R5, r3 41.5 → R4,
    # r4 76.5 → R3, r5 149.5 → R2, r6 395.5 → R1, r9 29.5 → R5, r10 20.5 → R5, r11 29.5 → R5
    got = [(r["r"], r["f"], r["segment"], r["members"], r["revenue"], r["avg_revenue"]) for r in report.rows]
    assert got == [
        (5, 4, "優良", 1, 15920, 15920),        # r1
        (5, 3, "育成", 1, 36000, 36000),        # r9
        (5, 2, "育成", 2, 47960, 23980),        # r10 + r11
        (5, 1, "新規", 1, 4980, 4980),          # r2 (cross order counts as revenue, cancelled one not)
        (4, 2, "育成", 1, 7960, 7960),          # r3
        (3, 1, "要注意", 1, 3980, 3980),        # r4
        (2, 1, "離脱予備", 1, 3980, 3980),      # r5
        (1, 5, "休眠", 1, 23880, 23880),        # r6 (F 6 → 5)
    ]
    # M = ntile(5) by (revenue, member_id) over 9 members, groups of 2 2 2 2 1:
    # r4 r5 | r2 r10 | r3 r1 | r6 r9 | r11  ("rfm-r10" sorts before "rfm-r3")
    m = {(r["r"], r["f"]): r["avg_m"] for r in report.rows}
    assert (m[(5, 4)], m[(5, 2)], m[(1, 5)], m[(5, 1)]) == (3.0, 3.5, 4.0, 2.0)
    # --to is the as-of day: on 2026-06-16 (end of day) r2, r8 and later purchases are not there yet.
    earlier = await run_report(report_pool, "rfm", end=date(2026, 6, 15))
    assert sum(r["members"] for r in earlier.rows) == 8
    assert earlier.as_of == jst(2026, 6, 16, 0)


async def test_cpm_by_hand(report_pool):
    await write(report_pool, rfm_members("cpm-"))
    report = await run_report(report_pool, "cpm", as_of=AS_OF)
    assert report.columns == ["segment", "members", "revenue", "avg_revenue", "share"]
    assert [r["segment"] for r in report.rows] == list(CPM_SEGMENTS)
    got = {r["segment"]: (r["members"], r["revenue"], r["avg_revenue"], r["share"]) for r in report.rows}
    # active = latest main purchase ≤ 90 days before as_of; tenure 300 d; ¥30,000
    assert got == {
        "初回客": (2, 8960, 4480, 0.2222),          # r2 (4980) r4 (3980)
        "よちよち客": (2, 23880, 11940, 0.2222),    # r1 (tenure 106 d, 15920) r3 (49 d, 7960)
        "コツコツ客": (1, 7960, 7960, 0.1111),      # r10 (tenure 405 d, 7960)
        "流行客": (1, 40000, 40000, 0.1111),        # r11 (31 d, 40000)
        "優良客": (1, 36000, 36000, 0.1111),        # r9 (365 d, 36000)
        "初回離脱客": (1, 3980, 3980, 0.1111),      # r5 (150 d ago)
        "よちよち離脱客": (1, 23880, 23880, 0.1111),  # r6 (tenure 151 d, last 395 d ago)
        "コツコツ離脱客": (0, 0, None, 0.0),
        "流行離脱客": (0, 0, None, 0.0),
        "優良離脱客": (0, 0, None, 0.0),
    }


# --- LTV -------------------------------------------------------------------------------------


async def test_ltv_by_hand(report_pool):
    p = "ltv-"
    events = [
        # January cohort
        order(p + "l1", jst(2026, 1, 10), "l1-1"), order(p + "l1", jst(2026, 2, 9), "l1-2"),  # day 30 exactly
        order(p + "l1", jst(2026, 3, 11), "l1-3"),  # day 60
        order(p + "l2", jst(2026, 1, 20), "l2-1", price=5000),
        order(p + "l2", jst(2026, 1, 25), "l2-x", role="cross", price=1000),  # day 5
        order(p + "l2", jst(2026, 3, 1), "l2-c", price=5000), cancelled(p + "l2", jst(2026, 3, 2), "l2-c"),
        order(p + "l2", jst(2026, 4, 1), "l2-2", price=5000),  # day 71
        order(p + "l3", jst(2025, 12, 25), "l3-t", role="trial", price=500),  # before the first purchase
        order(p + "l3", jst(2026, 1, 31), "l3-1"),
        # February cohort
        order(p + "l4", jst(2026, 2, 5), "l4-1", price=10000), order(p + "l4", jst(2026, 2, 20), "l4-2", price=10000),
        # March cohort: 1 March 00:30 JST (still February in UTC)
        order(p + "l5", jst(2026, 3, 1, 0, 30), "l5-1", price=2000),
    ]
    await write(report_pool, events)
    report = await run_report(report_pool, "ltv", as_of=jst(2026, 5, 5, 0))
    assert report.columns == ["cohort", "members", *(f"day_{d}" for d in range(0, 361, 30))]
    rows = by(report.rows, "cohort")
    assert list(rows) == ["2026-01", "2026-02", "2026-03"]
    jan, feb, mar = rows["2026-01"], rows["2026-02"], rows["2026-03"]
    # January (3 members; the latest first purchase 31 Jan, so day 90 = 1 May has elapsed, day 120 not):
    # day 0:  3980 + 5000 + 3980 = 12960 / 3 = 4320
    # day 30: 7960 + 6000 + 3980 = 17940 / 3 = 5980
    # day 60: 11940 + 6000 + 3980 = 21920 / 3 = 7306.67 → 7307
    # day 90: 11940 + 11000 + 3980 = 26920 / 3 = 8973.33 → 8973
    assert jan["members"] == 3
    assert [jan[f"day_{d}"] for d in (0, 30, 60, 90, 120, 360)] == [4320, 5980, 7307, 8973, None, None]
    # February (l4: first 5 Feb; day 90 = 6 May is after as_of)
    assert [feb[f"day_{d}"] for d in (0, 30, 60, 90)] == [10000, 20000, 20000, None]
    # March (day 60 = 30 Apr 00:30 elapsed; day 90 not)
    assert [mar[f"day_{d}"] for d in (0, 30, 60, 90)] == [2000, 2000, 2000, None]

    only_feb = await run_report(report_pool, "ltv", date(2026, 2, 1), date(2026, 2, 28), as_of=jst(2026, 5, 5, 0))
    assert [r["cohort"] for r in only_feb.rows] == ["2026-02"]


# --- the read-model views --------------------------------------------------------------------


async def test_orders_view_joins_late_and_early_events(report_pool):
    p = "ov-"
    await write(report_pool, [
        shipped(p + "m", jst(2026, 1, 2), "o1"),  # before its order
        shipped(p + "m", jst(2026, 1, 3), "o1"),  # a second shipment: the earliest counts
        order(p + "m", jst(2026, 1, 1), "o1", quantity=2, price=3980,
              extra_lines=({"sku": "CROSS-1", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 1500},)),
        order(p + "m", jst(2026, 1, 5), "o2", role="trial", price=500, days_supply=7),
        sample(p + "m", jst(2026, 1, 6), "o3"),
        cancelled(p + "m", jst(2026, 1, 7), "o9"),  # an order never placed: no row
    ])
    rows = {r["order_id"]: r for r in await report_pool.fetch("SELECT * FROM orders WHERE member_id = $1", p + "m")}
    assert set(rows) == {"o1", "o2", "o3"}
    o1 = rows["o1"]
    assert (o1["shipped_at"], o1["is_main"], o1["has_cross"], o1["is_trial"], o1["revenue"],
            o1["main_supply_days"]) == (jst(2026, 1, 2), True, True, False, 2 * 3980 + 1500, 60)
    assert (rows["o2"]["is_trial"], rows["o2"]["is_main"], rows["o2"]["revenue"]) == (True, False, 500)
    assert (rows["o3"]["is_sample"], rows["o3"]["supply_days"], rows["o3"]["revenue"]) == (True, 7, 0)
    assert await report_pool.fetchval("SELECT count(*) FROM main_purchases WHERE member_id = $1", p + "m") == 1


async def test_unknown_report_and_bad_period(report_pool):
    with pytest.raises(ReportError, match="unknown report 'nope'"):
        await run_report(report_pool, "nope")
    with pytest.raises(ReportError, match="after"):
        await run_report(report_pool, "funnel", date(2026, 2, 1), date(2026, 1, 1))
    assert set(REPORTS) == {"scenarios", "funnel", "subscription-flow", "rfm", "cpm", "ltv", "channels",
                            "product-flow", "products", "cross-sell"}


async def test_every_report_renders_on_an_empty_database(report_pool):
    for name in REPORTS:
        report = await run_report(report_pool, name)
        assert report.to_text().splitlines()[0].startswith(report.title)
        assert report.to_csv().splitlines()[0] == ",".join(report.columns)
