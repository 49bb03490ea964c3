"""A preview as a CRM team reads it (a table) or a program does (JSON)."""

from __future__ import annotations

import json

from starter.preview.journey import Preview
from starter.table import local_date, local_time, scenario_label, table

COLUMNS = ("日付", "時刻", "シナリオ", "ステップ", "チャネル", "結果", "理由")


def to_json(preview: Preview) -> str:
    """One JSON array, a touch an object (one a line), in time order."""
    if not preview.touches:
        return "[]"
    items = ",\n".join("  " + json.dumps(t.as_json(), ensure_ascii=False) for t in preview.touches)
    return f"[\n{items}\n]"


def members_json(previews: list[Preview]) -> str:
    """Several members: one object, ``{"members": [{member_id, timezone, touches: [...]}]}``."""
    members = [{"member_id": p.member_id, "timezone": p.timezone,
                "touches": [t.as_json() for t in p.touches]} for p in previews]
    return json.dumps({"members": members}, ensure_ascii=False, indent=2)


def to_table(preview: Preview, config: str | None = None) -> str:
    """A table a CRM team reads: local date and time, scenario (id + name), step, channel, outcome, reason."""
    rows = [
        (local_date(t.at), local_time(t.at), scenario_label(t.scenario), t.step, t.channel or "-", t.outcome,
         t.reason)
        for t in preview.touches
    ]
    lines = [header(preview) + (f", config {config}" if config else "") + f", {len(preview.touches)} touches",
             "", *table(COLUMNS, rows)]
    if not rows:
        lines.append("(no touches)")
    return "\n".join(lines)


def header(preview: Preview) -> str:
    return (f"member {preview.member_id} ({preview.timezone}): "
            f"{preview.start.isoformat(timespec='minutes')} → {preview.end.isoformat(timespec='minutes')}")


def report_problems(preview: Preview) -> list[str]:
    """What the user should know about events that did not run (printed on standard error)."""
    notes = []
    if preview.not_run:
        notes.append(f"{preview.member_id}: {len(preview.not_run)} events after the preview window "
                     f"({preview.end.isoformat(timespec='minutes')}) were not run; use --days to widen it")
    for event in preview.refused:
        notes.append(f"event {event.event_id} ({event.type}) dropped: the member was erased before it")
    return notes
