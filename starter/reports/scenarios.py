"""The scenario KPI report: entries, conversions and the lift over the holdout group.

The scenario KPI definitions (``converts_on``, ``kpi_days``, names) come from
``workflows.scenarios.TEMPLATES``, and the holdout share and variants from the shop's
configuration versions (``Rules``, as the policy reads them); both are passed into the
SQL as arrays, so the templates and the rules stay the single source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflows.scenarios import TEMPLATES

if TYPE_CHECKING:
    from starter.reports.period import Window
    from workflows.versions import Version

# 95 % two-sided normal quantile, for the lift's confidence interval.
Z95 = 1.96


def lift_ctes(keys: tuple[str, ...]) -> str:
    """The CTEs ``wilson`` and ``lifted`` over a CTE ``measured`` with, per row (keyed by ``keys``),
    the treatment group's n1, x1 (converted), p1 and the holdout group's n2, x2, p2: ``lifted`` is
    ``measured`` with the lift p1 − p2 and its 95 % interval (ci_low, ci_high) by Newcombe's hybrid
    score method, NULL where a group is empty (see SCENARIOS_SQL)."""
    on = " AND ".join(f"w.{key} = m.{key}" for key in keys)
    return f"""wilson AS (  -- the Wilson score interval of each group's rate
    SELECT *,
           (p1 + z2 / (2 * n1)) / (1 + z2 / n1) - {Z95} * sqrt(p1 * (1 - p1) / n1 + z2 / (4 * n1 * n1)) / (1 + z2 / n1) AS l1,
           (p1 + z2 / (2 * n1)) / (1 + z2 / n1) + {Z95} * sqrt(p1 * (1 - p1) / n1 + z2 / (4 * n1 * n1)) / (1 + z2 / n1) AS u1,
           (p2 + z2 / (2 * n2)) / (1 + z2 / n2) - {Z95} * sqrt(p2 * (1 - p2) / n2 + z2 / (4 * n2 * n2)) / (1 + z2 / n2) AS l2,
           (p2 + z2 / (2 * n2)) / (1 + z2 / n2) + {Z95} * sqrt(p2 * (1 - p2) / n2 + z2 / (4 * n2 * n2)) / (1 + z2 / n2) AS u2
    FROM (SELECT *, {Z95} * {Z95} AS z2 FROM measured WHERE n1 > 0 AND n2 > 0) m
),
lifted AS (
    SELECT m.*, m.p1 - m.p2 AS lift,
           m.p1 - m.p2 - sqrt((w.p1 - w.l1) ^ 2 + (w.u2 - w.p2) ^ 2) AS ci_low,
           m.p1 - m.p2 + sqrt((w.u1 - w.p1) ^ 2 + (w.p2 - w.l2) ^ 2) AS ci_high
    FROM measured m
    LEFT JOIN wilson w ON {on}
)"""


# The report's last columns, from ``lifted`` (lift_ctes): both groups' conversions and rates, the lift.
LIFT_COLUMNS = """x1::int AS converted,
       round(p1::numeric, 4)::float8 AS rate,
       x2::int AS holdout_converted,
       round(p2::numeric, 4)::float8 AS holdout_rate,
       round(lift::numeric, 4)::float8 AS lift,
       round(ci_low::numeric, 4)::float8 AS lift_ci_low,
       round(ci_high::numeric, 4)::float8 AS lift_ci_high"""


def _bucket_sql(*parts: str) -> str:
    """``workflows.policy.bucket`` in SQL: the first 8 bytes of sha256("a:b:c"), unsigned, mod 100.

    Used only for entries none of whose touches reached the holdout / variant decision
    (they expired first): the deterministic hash tells which group they were in.
    """
    joined = " || ':' || ".join(parts)
    return (f"(((('x' || encode(substr(sha256(convert_to({joined}, 'UTF8')), 1, 8), 'hex'))"
            f"::bit(64)::bigint::numeric + 18446744073709551616) % 18446744073709551616) % 100)::int")


# An *entry* is a distinct (member, scenario, occurrence) in touches; its moment is the
# earliest planned_at of its touches (--from/--to filter on it). An entry whose touches
# were all `cancelled` is left out: its exit (the conversion itself, a cancelled order, an
# erasure) came before its first step was due, so the scenario never acted on it — in
# either group. (S11, for one, records such an entry for every purchase followed by
# another within 90 days: counting them would drown the dormant members it is about.)
#
# Group (intention to treat). The policy decides holdout per member and scenario by a
# stable hash *before* any channel rule, but *after* the cancel (exit) and expiry rules.
# So: an entry with a `holdout` touch is in the holdout group; one with a `sent` or
# `suppressed` touch is in treatment; one whose touches all expired (or expired and were
# cancelled) before any step was decided gets the group the policy's hash gives it under
# the configuration version in force at the entry's moment (bucket < that version's
# holdout share of the scenario: the shop's, not a constant). Classifying entries by "all
# touches holdout" instead would move every holdout member with a cancelled later step
# (an early converter) into treatment and inflate the lift. Holdout touches carry no
# variant, so a scenario's holdout group is the shared control of each of its variants
# (each variant row shows it, so entered = the variant's treatment entries + the whole
# holdout); a treatment entry without a recorded variant gets the one the policy's
# weighted variant hash gives under the version in force at its moment. Every scenario
# has a row per variant the latest version declares (the template's own, or the shop's),
# and one per other variant its touches recorded; '-' stands for no variant.
#
# touched = treatment entries with at least one `sent` touch. Converted: the member had
# the scenario's converts_on within (moment, moment + kpi_days]: main_purchase = a
# non-cancelled order with a main line; cross_purchase = a non-cancelled order with a
# cross line; subscription_* = that event. rate = converted / treatment entries,
# holdout_rate = converted / holdout entries, lift = rate − holdout_rate with a 95 %
# interval for a difference of two proportions by Newcombe's hybrid score method
# (Wilson intervals (l, u) of each rate: lift − √((p1−l1)² + (u2−p2)²) …
# lift + √((u1−p1)² + (p2−l2)²)). Unlike the textbook normal approximation it stays
# honest for the small or all-or-nothing holdout groups a 10 % control gives a young
# scenario (1 member, 0 of 17 converted). NULL when a group is empty.
SCENARIOS_SQL = f"""
WITH kpi AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[])
        AS k(scenario, name, kpi, converts_on, kpi_days)
),
variants AS (  -- the variants the latest version declares; '-' for a scenario without any
    SELECT * FROM unnest($8::text[], $9::text[]) AS v(scenario, variant)
),
shares AS (  -- per configuration version (0: the SPEC's) and scenario: since when, its holdout share
    SELECT * FROM unnest($10::int[], $11::timestamptz[], $12::text[], $13::int[])
        AS s(version, effective_at, scenario, holdout_percent)
),
slots AS (  -- per version and scenario: each variant's slots [slot_from, slot_to) of its weights' sum
    SELECT * FROM unnest($14::int[], $15::text[], $16::text[], $17::int[], $18::int[], $19::int[])
        AS v(version, scenario, variant, slot_from, slot_to, slots)
),
entries AS (
    SELECT t.member_id, t.scenario, t.occurrence,
           min(t.planned_at)                                AS moment,
           bool_or(t.outcome = 'holdout')                   AS held_out,
           bool_or(t.outcome IN ('sent', 'suppressed'))     AS treated,
           bool_or(t.outcome = 'sent')                      AS touched,
           min(t.variant)                                   AS variant
    FROM touches t
    WHERE t.scenario = ANY($3::text[])
    GROUP BY t.member_id, t.scenario, t.occurrence
    HAVING bool_or(t.outcome <> 'cancelled')
       AND ($1::timestamptz IS NULL OR min(t.planned_at) >= $1::timestamptz)
       AND ($2::timestamptz IS NULL OR min(t.planned_at) < $2::timestamptz)
),
in_force AS (  -- each entry with the configuration version in force at its moment
    SELECT e.*, (SELECT s.version FROM shares s
                 WHERE s.scenario = e.scenario AND s.effective_at <= e.moment
                 ORDER BY s.effective_at DESC, s.version DESC LIMIT 1) AS version
    FROM entries e
),
assigned AS (
    SELECT e.member_id, e.scenario, e.moment, e.touched,
           CASE WHEN e.held_out THEN true
                WHEN e.treated THEN false
                ELSE {_bucket_sql("e.member_id", "e.scenario", "'holdout'")} < s.holdout_percent
           END AS holdout,
           coalesce(e.variant, v.variant, '-') AS arm
    FROM in_force e
    JOIN shares s ON s.version = e.version AND s.scenario = e.scenario
    LEFT JOIN slots v
           ON v.version = e.version AND v.scenario = e.scenario
          AND {_bucket_sql("e.member_id", "e.scenario", "'variant'")} % v.slots >= v.slot_from
          AND {_bucket_sql("e.member_id", "e.scenario", "'variant'")} % v.slots < v.slot_to
),
conversions AS (  -- per member and kind, every moment it happened
    SELECT member_id, kind, array_agg(at) AS ats
    FROM (
        SELECT member_id, 'main_purchase' AS kind, placed_at AS at FROM main_purchases
        UNION ALL
        SELECT member_id, 'cross_purchase', placed_at FROM orders
        WHERE has_cross AND NOT cancelled AND NOT is_sample
        UNION ALL
        SELECT member_id, type, occurred_at FROM member_events
        WHERE type IN ('subscription_started', 'subscription_resumed', 'subscription_cancelled')
    ) c
    GROUP BY member_id, kind
),
outcomes AS (
    SELECT a.scenario, a.arm, a.holdout, a.touched,
           coalesce((SELECT bool_or(at > a.moment AND at <= a.moment + make_interval(days => k.kpi_days))
                     FROM unnest(c.ats) AS at), false) AS converted
    FROM assigned a
    JOIN kpi k USING (scenario)
    LEFT JOIN conversions c ON c.member_id = a.member_id AND c.kind = k.converts_on
),
treatment AS (
    SELECT scenario, arm, count(*) AS n, count(*) FILTER (WHERE touched) AS touched,
           count(*) FILTER (WHERE converted) AS converted
    FROM outcomes WHERE NOT holdout GROUP BY scenario, arm
),
control AS (
    SELECT scenario, count(*) AS n, count(*) FILTER (WHERE converted) AS converted
    FROM outcomes WHERE holdout GROUP BY scenario
),
arms AS (  -- the declared variants, and any other recorded in touches
    SELECT scenario, variant AS arm FROM variants
    UNION
    SELECT scenario, arm FROM treatment
),
measured AS (
    SELECT k.scenario, k.name, a.arm, k.kpi, k.kpi_days,
           coalesce(t.n, 0) AS n1, coalesce(t.touched, 0) AS touched, coalesce(t.converted, 0) AS x1,
           coalesce(c.n, 0) AS n2, coalesce(c.converted, 0) AS x2,
           t.converted::float8 / nullif(t.n, 0) AS p1,
           c.converted::float8 / nullif(c.n, 0) AS p2
    FROM kpi k
    JOIN arms a USING (scenario)
    LEFT JOIN treatment t ON t.scenario = k.scenario AND t.arm = a.arm
    LEFT JOIN control c ON c.scenario = k.scenario
),
{lift_ctes(('scenario', 'arm'))}
SELECT scenario, name, arm AS variant, NULL::text AS run, kpi, kpi_days AS window_days,
       (n1 + n2)::int AS entered, n2::int AS holdout, touched::int AS touched,
       NULL::int AS suppressed, NULL::text AS suppressed_by, NULL::int AS expired, {LIFT_COLUMNS}
FROM lifted
ORDER BY scenario, arm
"""


def scenario_args(w: Window, **_options: object) -> tuple:
    """The SQL's parameters; the options (``runs``) are the broadcast rows' (``broadcasts.add_broadcasts``)."""
    versions = w.shop.versions
    declared = [(t.scenario.value, name) for t in TEMPLATES
                for name in ([v for v, _ in w.shop.latest.rules.variants(t.scenario.value, t.variants)] or ["-"])]
    shares = [(v.number, v.effective_at, t.scenario.value, v.rules.holdout_percent(t.scenario.value))
              for v in versions for t in TEMPLATES]
    slots = [row for v in versions for t in TEMPLATES for row in _slots(v, t.scenario.value, t.variants)]
    return (
        w.start, w.end,
        [t.scenario.value for t in TEMPLATES], [t.name_ja for t in TEMPLATES], [t.kpi for t in TEMPLATES],
        [t.converts_on for t in TEMPLATES], [t.kpi_days for t in TEMPLATES],
        *_columns(declared, 2), *_columns(shares, 4), *_columns(slots, 6),
    )


def _slots(version: Version, scenario: str, default: tuple[str, ...]) -> list[tuple]:
    """(version, scenario, variant, slot_from, slot_to, slots): ``policy.variant_of``'s split."""
    weighted = version.rules.variants(scenario, default)
    total, rows = sum(w for _, w in weighted), []
    start = 0
    for variant, weight in weighted:
        rows.append((version.number, scenario, variant, start, start + weight, total))
        start += weight
    return rows


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as the columns ``unnest`` reads (empty columns when there are no rows)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]
