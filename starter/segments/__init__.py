"""Segments (issue 13): named selections of members over the read models, for marketers.

A segment is declared as data (``workflows.segments.Segment``: stage, F, subscription,
RFM / CPM class, products bought or never bought, days since the last purchase,
revenue, sales channel, channels reachable / consented / contactable) in the shop file's
``[segments]`` or saved in PostgreSQL (``segments`` table, migration 012), and read as
one parameterised query.

- ``query``: ``members_in(pool, segment, *, limit=None, as_of=None)`` and ``count`` —
  what ``segment show`` and broadcasts read.
- ``store``: where segments are kept and the lookup order (database, the configuration
  applied last, ``--config FILE``); a row of ``report rfm`` / ``report cpm`` as a segment.
- ``cli``: ``goldenroute segment list | show | from-report | save | delete``.
"""

from __future__ import annotations

from starter.segments.query import count, members_in
from starter.segments.store import Found, SegmentError, from_report, lookup

__all__ = ["Found", "SegmentError", "count", "from_report", "lookup", "members_in"]
