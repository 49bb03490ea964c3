"""``goldenroute preview --compare OLD NEW``: what a configuration change does to each example member.

Both sides run the member's same events (``run``), one under each configuration.
A touch is the same touch on both sides when its scenario, step and occurrence (what
started the scenario entry: an order, a pause, a signal) are the same — its
idempotency key without the member. Then it *moved* if when it was decided, its
channel, outcome, reason or variant differ; it *appeared* if only NEW decides it
(a step switched on, a scenario entered that was not), it *disappeared* if only OLD
did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starter.preview.journey import Preview, PreviewTouch
from starter.preview.render import header
from starter.table import local_date, local_time, scenario_label, table

COMPARED = ("at", "channel", "outcome", "reason", "variant")


@dataclass(frozen=True)
class Move:
    before: PreviewTouch
    after: PreviewTouch

    def changed(self) -> list[str]:
        return [name for name in COMPARED if getattr(self.before, name) != getattr(self.after, name)]


@dataclass(frozen=True)
class MemberChanges:
    """One member's touches under NEW against OLD."""

    before: Preview
    after: Preview
    appeared: list[PreviewTouch]
    disappeared: list[PreviewTouch]
    moved: list[Move]
    unchanged: int

    @property
    def member_id(self) -> str:
        return self.before.member_id


def compare(before: Preview, after: Preview) -> MemberChanges:
    """The member's touches under ``after``'s configuration against ``before``'s (same events)."""
    old = {t.identity: t for t in before.touches}
    new = {t.identity: t for t in after.touches}
    both = [(old[k], new[k]) for k in old if k in new]
    moved = [Move(b, a) for b, a in both if any(getattr(b, n) != getattr(a, n) for n in COMPARED)]
    return MemberChanges(
        before=before, after=after,
        appeared=[t for k, t in new.items() if k not in old],
        disappeared=[t for k, t in old.items() if k not in new],
        moved=moved, unchanged=len(both) - len(moved),
    )


# --- output -------------------------------------------------------------------------------------


def to_json(changes: list[MemberChanges], old: str, new: str) -> str:
    """One object: the two configurations and, per member, what appeared, disappeared and moved."""
    def touch(member_id: str, t: PreviewTouch) -> dict:
        return {"key": t.key(member_id), **t.as_json()}

    def side(t: PreviewTouch) -> dict:
        return {"at": t.at.isoformat(timespec="seconds"), "channel": t.channel, "outcome": t.outcome,
                "reason": t.reason, "variant": t.variant}

    members = [{
        "member_id": c.member_id,
        "appeared": [touch(c.member_id, t) for t in c.appeared],
        "disappeared": [touch(c.member_id, t) for t in c.disappeared],
        "moved": [{"key": m.before.key(c.member_id), "scenario": m.before.scenario, "step": m.before.step,
                   "occurrence": m.before.occurrence, "before": side(m.before), "after": side(m.after)}
                  for m in c.moved],
        "unchanged": c.unchanged,
    } for c in changes]
    return json.dumps({"old": old, "new": new, "members": members}, ensure_ascii=False, indent=2)


COLUMNS = ("変化", "日付", "時刻", "シナリオ", "ステップ", "チャネル", "結果", "理由")


def to_table(changes: MemberChanges, old: str, new: str) -> str:
    """Per member: a summary line, then every change in time order; a moved touch shows ``old → new``
    in each column that changed."""
    summary = (f"{old} → {new}: {len(changes.moved)} moved, {len(changes.appeared)} appeared, "
               f"{len(changes.disappeared)} disappeared, {changes.unchanged} unchanged")
    rows = sorted(
        [(t.at, _row("appeared", t, t)) for t in changes.appeared]
        + [(t.at, _row("disappeared", t, t)) for t in changes.disappeared]
        + [(m.before.at, _row("moved", m.before, m.after)) for m in changes.moved],
        key=lambda pair: pair[0])
    lines = [header(changes.after), summary]
    if rows:
        lines += ["", *table(COLUMNS, [r for _, r in rows])]
    return "\n".join(lines)


def _row(change: str, before: PreviewTouch, after: PreviewTouch) -> tuple[str, ...]:
    def cell(render, name: str) -> str:
        old, new = render(getattr(before, name)), render(getattr(after, name))
        return old if old == new else f"{old} → {new}"

    step = before.step if before.variant == after.variant else (
        f"{before.step} ({before.variant or '-'} → {after.variant or '-'})")
    return (change, cell(local_date, "at"), cell(local_time, "at"), scenario_label(before.scenario), step,
            cell(_or_dash, "channel"), cell(_or_dash, "outcome"), cell(_or_dash, "reason"))


def _or_dash(value: str | None) -> str:
    return value or "-"
