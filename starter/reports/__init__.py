"""The marketers' reports (SPEC §6): every report's SQL in one place.

Each report is one query over the read-model views of migration 004 (``orders``,
``main_purchases``, ``subscriptions`` …) and the ``touches`` table; PostgreSQL does
the counting, Python only passes parameters and renders the (few) result rows as
an aligned text table, JSON or CSV.

Dates. ``--from`` / ``--to`` are calendar dates in the shop's timezone (its
configuration's ``shop.timezone``; Asia/Tokyo before one is applied), both
inclusive: ``start`` is 00:00 of the first day and the upper bound is 00:00 of the
day after ``end``. Months of cohorts are months in the same timezone. ``as_of`` (the "today" of RFM, CPM and LTV) defaults to now — for
RFM and CPM to the end of ``--to`` when it is given; ``--from`` has no part in them.

The scenario KPI definitions (``converts_on``, ``kpi_days``, names) come from
``workflows.scenarios.TEMPLATES`` and are passed into the SQL as arrays, so the
templates stay the single source.

Modules: ``period`` (the shop's timezone and configuration versions, --from/--to
and as_of), ``scenarios`` (the KPI and lift SQL), ``broadcasts`` (the scenario
report's rows of each broadcast: reach, outcomes, a main purchase within
``BROADCAST_KPI_DAYS`` against the holdout), ``cohorts`` (funnel, 定期フロー,
LTV), ``segments`` (RFM, CPM), ``registry`` (every report by name, ``run_report``)
and ``render`` (text, JSON, CSV).
"""

from __future__ import annotations

from starter.reports.broadcasts import BROADCAST_KPI_DAYS
from starter.reports.cohorts import FUNNEL_STEPS, LTV_DAYS, SUBSCRIPTION_DELIVERIES
from starter.reports.period import (
    DEFAULT_TIMEZONE, ReportError, Shop, Window, day_start, read_shop, shop_time, window,
)
from starter.reports.registry import REPORTS, ReportSpec, get_spec, run_report
from starter.reports.render import Report
from starter.reports.scenarios import Z95, _bucket_sql  # noqa: F401 (tests check the SQL hash)
from starter.reports.segments import (
    CPM_ACTIVE_DAYS, CPM_REVENUE_YEN, CPM_SEGMENTS, CPM_TENURE_DAYS, RFM_RECENCY_DAYS,
)

__all__ = [
    "BROADCAST_KPI_DAYS", "CPM_ACTIVE_DAYS", "CPM_REVENUE_YEN", "CPM_SEGMENTS", "CPM_TENURE_DAYS", "FUNNEL_STEPS", "LTV_DAYS",
    "DEFAULT_TIMEZONE", "REPORTS", "RFM_RECENCY_DAYS", "SUBSCRIPTION_DELIVERIES", "Z95", "Report", "ReportError",
    "ReportSpec", "Shop", "Window", "day_start", "get_spec", "read_shop", "run_report", "shop_time", "window",
]
