"""The broadcasts' rows of the scenario KPI report: reach, outcomes, and the lift over the holdout.

A broadcast's run reaches each member of its segment as one touch of the pseudo-scenario
``BC`` (step = the broadcast's name, occurrence = the run: ``workflows.broadcasts``), decided
by the member's own policy and recorded in ``touches`` like any scenario's. One row per
broadcast (``--runs``: per broadcast and run), after the scenarios' rows, in the same columns:

- ``entered``: members reached, i.e. the run's touches (one per member and run; a touch
  ``cancelled`` — the member was erased before it was decided — is left out).
- ``holdout``: touches held out (the broadcast's own stable share of members).
- ``touched``: touches sent; ``suppressed``: touches suppressed, and ``suppressed_by`` the
  reasons with their counts (``no_channel 3, frequency_cap 1``); ``expired``: touches decided
  too late to be sent (``policy.late_after_days``).
- ``converted``: treatment touches (sent or suppressed: intention to treat, as the policy
  decides the holdout before any channel rule) followed by a main purchase (a non-cancelled
  order with a main line, ``main_purchases``) within ``BROADCAST_KPI_DAYS`` of the touch's
  decision, i.e. in (decided_at, decided_at + 14 days]; ``holdout_converted`` the same of the
  holdout's touches, whose decision is the moment the member would have been sent the
  message. rate, holdout_rate, lift and its 95 % interval as for a scenario
  (``scenarios.lift_ctes``).

Expired touches are in neither group: expiry is decided before the holdout hash and does
not depend on it, so leaving them out of both keeps the groups alike (a scenario instead
places an entry that only expired by the hash, since its other steps may have acted).
A member reached by two runs counts twice, once per run: each run is its own touch and
its own 14 days. ``--from``/``--to`` select touches by the run's moment (``planned_at``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starter.reports.render import Report
from starter.reports.scenarios import LIFT_COLUMNS, lift_ctes
from workflows.broadcasts import BROADCAST

if TYPE_CHECKING:
    from starter.reports.period import Window

BROADCAST_KPI_DAYS = 14  # a broadcast "converts" a member who buys a main product within 14 days
BROADCAST_KPI = f"{BROADCAST_KPI_DAYS}日以内の本品購入率"

BROADCASTS_SQL = f"""
WITH configured AS (  -- the broadcasts of the configuration applied last: a row even before a run
    SELECT unnest($4::text[]) AS broadcast
),
reached AS (
    SELECT t.member_id, t.step AS broadcast, CASE WHEN $3::bool THEN t.occurrence ELSE '' END AS run,
           t.outcome, t.reason, t.decided_at
    FROM touches t
    WHERE t.scenario = '{BROADCAST}' AND t.outcome <> 'cancelled'
      AND ($1::timestamptz IS NULL OR t.planned_at >= $1::timestamptz)
      AND ($2::timestamptz IS NULL OR t.planned_at < $2::timestamptz)
),
purchases AS (  -- per member, every main purchase's moment
    SELECT member_id, array_agg(placed_at) AS ats FROM main_purchases GROUP BY member_id
),
outcomes AS (
    SELECT r.*, r.outcome IN ('sent', 'suppressed') AS treated,
           coalesce((SELECT bool_or(at > r.decided_at AND at <= r.decided_at + make_interval(days => $5::int))
                     FROM unnest(p.ats) AS at), false) AS converted
    FROM reached r
    LEFT JOIN purchases p ON p.member_id = r.member_id
),
counted AS (
    SELECT broadcast, run, count(*) AS touches,
           count(*) FILTER (WHERE outcome = 'sent') AS sent,
           count(*) FILTER (WHERE outcome = 'suppressed') AS suppressed,
           count(*) FILTER (WHERE outcome = 'expired') AS expired,
           count(*) FILTER (WHERE treated) AS n1,
           count(*) FILTER (WHERE treated AND converted) AS x1,
           count(*) FILTER (WHERE outcome = 'holdout') AS n2,
           count(*) FILTER (WHERE outcome = 'holdout' AND converted) AS x2
    FROM outcomes GROUP BY broadcast, run
),
reasons AS (
    SELECT broadcast, run, string_agg(reason || ' ' || n, ', ' ORDER BY n DESC, reason) AS suppressed_by
    FROM (SELECT broadcast, run, reason, count(*) AS n FROM outcomes WHERE outcome = 'suppressed'
          GROUP BY broadcast, run, reason) r
    GROUP BY broadcast, run
),
measured AS (
    SELECT c.*, s.suppressed_by,
           x1::float8 / nullif(n1, 0) AS p1, x2::float8 / nullif(n2, 0) AS p2
    FROM (SELECT * FROM counted
          UNION ALL
          SELECT broadcast, '', 0, 0, 0, 0, 0, 0, 0, 0 FROM configured
          WHERE broadcast NOT IN (SELECT broadcast FROM counted)) c
    LEFT JOIN reasons s USING (broadcast, run)
),
{lift_ctes(("broadcast", "run"))}
SELECT '{BROADCAST}' AS scenario, broadcast AS name, '-' AS variant, nullif(run, '') AS run,
       $6::text AS kpi, $5::int AS window_days,
       touches::int AS entered, n2::int AS holdout, sent::int AS touched,
       suppressed::int AS suppressed, suppressed_by, expired::int AS expired, {LIFT_COLUMNS}
FROM lifted
ORDER BY broadcast, run
"""


def broadcast_args(w: Window, runs: bool) -> tuple:
    return (w.start, w.end, runs, list(w.shop.broadcasts), BROADCAST_KPI_DAYS, BROADCAST_KPI)


async def add_broadcasts(conn_or_pool: Any, w: Window, report: Report, *, runs: bool = False) -> Report:
    """The scenario report with a row per broadcast (per broadcast and run with ``runs``) after its rows."""
    records = await conn_or_pool.fetch(BROADCASTS_SQL, *broadcast_args(w, runs))
    report.rows.extend({c: record[c] for c in report.columns} for record in records)
    return report


def runs_terms(*, runs: bool = False) -> str:
    return "・ブロードキャストは回別" if runs else ""
