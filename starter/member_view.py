"""``goldenroute member ID``: one member as a marketer reads it.

The header (stage, F, subscription, profile, channels, next touch) is the member
workflow's own ``state`` query; when Temporal cannot be reached it comes from the
``members`` snapshot in PostgreSQL, and the view says so. Below it, one timeline in
time order: every event of the event log (``member_events``), every touch with the
one outcome and the rule that decided it (``touches``), and the touches the workflow
still has planned. Times are in the member's timezone.

No personal data: an event shows only whitelisted fields (the logged payloads carry
no contact data; the whitelist keeps it so whatever they carry), and an erased
member's events show their type only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.restore import load_touches
from starter.rebuild import member_snapshot
from starter.table import local_date, local_time, scenario_label, table
from worker.client import connect
from worker.settings import Settings
from workflows.events import InvalidEvent, MemberEvent, parse_event
from workflows.lifecycle import MemberState, Stage, apply, new_member
from workflows.member import MemberWorkflow, workflow_id
from workflows.messages import MemberStateView

DEFAULT_TIMEZONE = "Asia/Tokyo"
CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = timedelta(seconds=5)
TEMPORAL, POSTGRESQL = "temporal", "postgresql"

# What an event shows of its payload: identifiers and the facts a rule reads, never contact data.
SALIENT: dict[str, tuple[str, ...]] = {
    "member_registered": ("sales_channel", "consent", "reachable", "timezone"),
    "sample_requested": ("order_id", "sku", "days_supply"),
    "order_placed": ("order_id", "lines", "subscription_id", "sales_channel"),
    "order_shipped": ("order_id",),
    "order_cancelled": ("order_id",),
    "subscription_started": ("subscription_id", "sku", "interval_days"),
    "subscription_paused": ("subscription_id",),
    "subscription_resumed": ("subscription_id",),
    "subscription_cancelled": ("subscription_id",),
    "subscription_interval_changed": ("subscription_id", "interval_days"),
    "churn_signal": ("signal",),
    "consent_changed": ("channel", "granted"),
    "member_erased": (),
    "broadcast_requested": ("broadcast", "run", "template", "channel"),
}
LINE_FIELDS = ("sku", "role", "quantity", "days_supply")

_EVENTS = """
SELECT seq, event_id, type, occurred_at, payload::text AS payload, forwarded_at IS NOT NULL AS forwarded
FROM member_events WHERE member_id = $1 ORDER BY occurred_at, seq
"""
_TOUCHES = """
SELECT scenario, step, occurrence, channel, variant, outcome, reason, planned_at, decided_at, delivered_at
FROM touches WHERE member_id = $1 ORDER BY decided_at, recorded_at, planned_at, idempotency_key
"""
_SNAPSHOT = "SELECT * FROM members WHERE member_id = $1"


async def reach_temporal(settings: Settings) -> tuple[Client | None, str | None]:
    """A Temporal client, or None and why not: the view then comes from PostgreSQL alone."""
    try:
        return await asyncio.wait_for(connect(settings), CONNECT_TIMEOUT), None
    except (RuntimeError, OSError, asyncio.TimeoutError):
        return None, (f"Temporal at {settings.temporal_address} is not reachable" if settings.temporal_address
                      else "TEMPORAL_ADDRESS is not set and no dev stack is running")


class UnknownMember(LookupError):
    """Nothing of the member anywhere: most likely a mistyped id."""

    def __init__(self, member_id: str, temporal: str | None) -> None:
        super().__init__(f"no member {member_id!r}: PostgreSQL holds no event, touch or snapshot of it"
                         + (f"; {temporal}" if temporal else ""))


@dataclass(frozen=True)
class Header:
    member_id: str
    stage: str
    purchase_count: int
    subscription_status: str
    sales_channel: str | None
    timezone: str
    consented_channels: tuple[str, ...]
    reachable_channels: tuple[str, ...]
    registered_at: datetime | None
    last_purchase_at: datetime | None
    next_touch_at: datetime | None
    source: Literal["temporal", "postgresql"]
    source_note: str | None = None  # why the header is not the workflow's own
    erased_at: datetime | None = None
    refused_events: tuple[str, ...] = ()

    @property
    def erased(self) -> bool:
        return self.stage == Stage.ERASED.value


@dataclass(frozen=True)
class Item:
    """One line of the timeline: ``fields`` are identifiers, JSON-ready except datetimes."""

    at: datetime
    kind: Literal["event", "touch", "planned"]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberView:
    header: Header
    timeline: list[Item]


# --- gathering ------------------------------------------------------------------------------


async def member_view(pool: asyncpg.Pool, client: Client | None, member_id: str,
                      unreachable: str | None = None, now: datetime | None = None) -> MemberView:
    """The member from PostgreSQL and, when ``client`` is given, its workflow's ``state`` query.

    ``unreachable`` says why there is no client. Raises ``UnknownMember``.
    """
    now = now or datetime.now(timezone.utc)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        events = await conn.fetch(_EVENTS, member_id)
        touches = await conn.fetch(_TOUCHES, member_id)
        snapshot = await conn.fetchrow(_SNAPSHOT, member_id)
    erased = any(e["type"] == "member_erased" for e in events)
    view, note = None, unreachable
    if erased:
        note = "its workflow completed when the member was erased"
    elif client is not None:
        view, note = await query_state(client, member_id)
    if view is None and not (events or touches or snapshot):
        raise UnknownMember(member_id, note)
    logged = _parsed(events)
    folded = _fold(member_id, logged)
    if view is not None:
        header = _from_workflow(view, folded, snapshot)
    else:
        if snapshot is None:  # not projected yet: what `db rebuild` would write, from the log
            decided = list(await load_touches(pool, member_id))
            snapshot = member_snapshot(member_id, logged, decided, now).model_dump()
        header = _from_postgresql(member_id, snapshot, folded, note)
    zone = ZoneInfo(header.timezone)
    timeline = [*(_event_item(e, erased) for e in events), *(_touch_item(t) for t in touches),
                *(_planned_item(t) for t in (view.planned if view else ()))]
    timeline.sort(key=lambda i: (i.at, ("event", "touch", "planned").index(i.kind)))  # stable within a kind
    return MemberView(header=header, timeline=[replace(i, at=i.at.astimezone(zone)) for i in timeline])


async def query_state(client: Client, member_id: str) -> tuple[MemberStateView | None, str | None]:
    """The workflow's ``state``, or None and why not."""
    handle = client.get_workflow_handle(workflow_id(member_id))
    try:
        return await handle.query(MemberWorkflow.state, rpc_timeout=QUERY_TIMEOUT), None
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return None, f"Temporal has no workflow {handle.id}"
        if error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE):
            return None, f"{handle.id} did not answer its state query (is a worker running?)"
        return None, f"{handle.id}: {error.message}"
    except (RuntimeError, asyncio.TimeoutError) as error:
        return None, f"{handle.id} did not answer its state query: {error}"


def _parsed(rows: list[asyncpg.Record]) -> list[MemberEvent]:
    """The logged events in arrival order, as the workflow folded them; a row that no longer
    parses is left out here (its line in the timeline still shows it)."""
    events = []
    for row in sorted(rows, key=lambda r: r["seq"]):
        try:
            events.append(parse_event(row["payload"]))
        except InvalidEvent:
            continue
    return events


def _fold(member_id: str, events: list[MemberEvent]) -> MemberState:
    """The event log folded with the workflow's own ``apply``: the profile and consent it knows."""
    state = new_member(member_id)
    for event in events:
        state = apply(state, event)
    return state


def _from_workflow(view: MemberStateView, folded: MemberState, snapshot: asyncpg.Record | None) -> Header:
    # A worker that predates the profile fields of ``state``: the snapshot, else the log.
    sales_channel = view.sales_channel or (snapshot and snapshot["sales_channel"]) or folded.profile.sales_channel
    return Header(
        member_id=view.member_id, stage=view.stage.value, purchase_count=view.purchase_count,
        subscription_status=view.subscription_status.value, sales_channel=str(sales_channel),
        timezone=view.timezone or folded.profile.timezone or DEFAULT_TIMEZONE,
        consented_channels=tuple(c.value for c in view.consented_channels),
        reachable_channels=tuple(c.value for c in view.reachable_channels),
        registered_at=view.registered_at, last_purchase_at=view.last_main_purchase_at,
        next_touch_at=view.next_touch_at, source=TEMPORAL, refused_events=view.refused_events,
    )


def _from_postgresql(member_id: str, snapshot, folded: MemberState, note: str | None) -> Header:
    erased = snapshot["stage"] == Stage.ERASED.value or folded.erased_at is not None
    return Header(
        member_id=member_id, stage=Stage.ERASED.value if erased else snapshot["stage"],
        purchase_count=snapshot["purchase_count"], subscription_status=snapshot["subscription_status"],
        sales_channel=snapshot["sales_channel"], timezone=folded.profile.timezone or DEFAULT_TIMEZONE,
        consented_channels=() if erased else tuple(c.value for c, on in sorted(folded.consent.items()) if on),
        reachable_channels=() if erased else tuple(c.value for c in sorted(folded.profile.reachable)),
        registered_at=snapshot["registered_at"], last_purchase_at=snapshot["last_purchase_at"],
        next_touch_at=None if erased else snapshot["next_touch_at"], source=POSTGRESQL,
        source_note=note, erased_at=folded.erased_at,
    )


def _event_item(row: asyncpg.Record, erased: bool) -> Item:
    # Not forwarded: accepted while Temporal was unreachable; the workflow has not folded it yet.
    fields: dict[str, Any] = {"type": row["type"], "event_id": row["event_id"], "forwarded": row["forwarded"]}
    if not erased:  # an erased member keeps its history's shape: which events, when
        fields |= salient(row["type"], json.loads(row["payload"]))
    return Item(at=row["occurred_at"], kind="event", fields=fields)


def salient(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The whitelisted fields of a logged payload, as identifiers."""
    shown: dict[str, Any] = {}
    for name in SALIENT.get(event_type, ()):
        value = payload.get(name)
        if name == "lines" and value:
            value = [{k: line[k] for k in LINE_FIELDS if k in line} for line in value]
        elif name == "consent" and value:
            value = {channel: granted for channel, granted in sorted(value.items()) if granted is not None} or None
        elif name == "reachable" and value is not None:
            value = sorted(value)
        if value is not None:
            shown[name] = value
    return shown


def _touch_item(row: asyncpg.Record) -> Item:
    return Item(at=row["decided_at"], kind="touch", fields={
        "scenario": row["scenario"], "step": row["step"], "occurrence": row["occurrence"],
        "channel": row["channel"], "outcome": row["outcome"], "reason": row["reason"], "variant": row["variant"],
        "due_at": row["planned_at"], "decided_at": row["decided_at"], "delivered_at": row["delivered_at"],
    })


def _planned_item(touch) -> Item:
    return Item(at=touch.send_at, kind="planned", fields={
        "scenario": touch.scenario, "step": touch.step, "occurrence": touch.occurrence,
        "channel": touch.channel.value if touch.channel else None,
        "due_at": touch.due_at, "send_at": touch.send_at, "cancelled_reason": touch.cancelled_reason,
    })


# --- output -----------------------------------------------------------------------------------


def to_json(view: MemberView) -> str:
    """``{member: {...}, timeline: [{at, kind, ...}]}``: identifiers, ISO 8601 in the member's timezone."""
    zone = ZoneInfo(view.header.timezone)
    header = view.header
    member = {
        "member_id": header.member_id, "stage": header.stage, "purchase_count": header.purchase_count,
        "subscription_status": header.subscription_status, "sales_channel": header.sales_channel,
        "timezone": header.timezone, "consented_channels": list(header.consented_channels),
        "reachable_channels": list(header.reachable_channels), "registered_at": header.registered_at,
        "last_purchase_at": header.last_purchase_at, "next_touch_at": header.next_touch_at,
        "erased": header.erased, "erased_at": header.erased_at, "source": header.source,
        "source_note": header.source_note, "refused_events": list(header.refused_events),
    }
    timeline = [{"at": i.at, "kind": i.kind, **i.fields} for i in view.timeline]
    return json.dumps({"member": _jsonable(member, zone), "timeline": _jsonable(timeline, zone)},
                      ensure_ascii=False, indent=2)


def _jsonable(value: Any, zone: ZoneInfo) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {k: _jsonable(v, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, zone) for v in value]
    return value


COLUMNS = ("日付", "時刻", "種別", "シナリオ・イベント", "ステップ", "チャネル", "結果", "理由・内容")
KINDS_JA = {"event": "イベント", "touch": "タッチ", "planned": "予定"}


def to_text(view: MemberView) -> str:
    """The header, then the timeline as one table in the member's local time; an event's
    details go in the last column, so that they do not widen the touches' columns."""
    zone = ZoneInfo(view.header.timezone)
    rows = [(local_date(i.at), local_time(i.at), KINDS_JA[i.kind], *_cells(i, zone)) for i in view.timeline]
    return "\n".join([*header_lines(view.header, zone), "", *(table(COLUMNS, rows) if rows else ["(no events)"])])


def header_lines(header: Header, zone: ZoneInfo) -> list[str]:
    def when(moment: datetime | None) -> str:
        return f"{local_date(moment.astimezone(zone))} {local_time(moment.astimezone(zone))}" if moment else "-"

    stage = header.stage
    if header.erased:
        erased = f" on {when(header.erased_at)}" if header.erased_at else ""
        stage += f" (personal data erased{erased}; its touches and event types remain)"
    if header.source == TEMPORAL:
        source = "the member workflow (Temporal state query)"
    else:
        source = "PostgreSQL: the members snapshot, channels folded from the event log"
        if header.source_note:
            source += f" ({header.source_note}" + ("" if header.erased else "; planned touches not shown") + ")"
    lines = [
        f"member        {header.member_id}",
        f"stage         {stage}",
        f"F             {header.purchase_count}",
        f"subscription  {header.subscription_status}",
        f"sales channel {header.sales_channel or '-'}",
        f"timezone      {header.timezone}",
        f"channels      consented {_names(header.consented_channels)}, "
        f"reachable {_names(header.reachable_channels)}",
        f"registered    {when(header.registered_at)}",
        f"last purchase {when(header.last_purchase_at)}",
        f"next touch    {when(header.next_touch_at)}",
        f"source        {source}",
    ]
    lines += [f"refused       {refused}" for refused in header.refused_events]
    return lines


def _cells(item: Item, zone: ZoneInfo) -> tuple[str, str, str, str, str]:
    """シナリオ・イベント, ステップ, チャネル, 結果, 理由・内容 of one timeline line."""
    f = item.fields
    if item.kind == "event":
        return f["type"], "", "", "", describe(f) + ("" if f["forwarded"] else " (not forwarded yet)")
    reason = [f.get("reason") or f.get("cancelled_reason") or ""]
    if f.get("variant"):
        reason.append(f"variant:{f['variant']}")
    due = f["due_at"].astimezone(zone)
    if due.replace(second=0, microsecond=0) != item.at.replace(second=0, microsecond=0):
        reason.append(f"(期日 {due.strftime('%m-%d %H:%M')})")
    outcome = "-" if item.kind == "planned" else f["outcome"]
    return (scenario_label(f["scenario"]), f["step"], f["channel"] or "-", outcome,
            " ".join(r for r in reason if r))


def describe(fields: dict[str, Any]) -> str:
    """An event's salient fields in a few words (the JSON keeps them as fields)."""
    kind, f = fields["type"], fields
    if kind == "member_registered":
        consent = f.get("consent") or {}
        parts = [f.get("sales_channel"),
                 consent and "consent " + _names(c for c, on in consent.items() if on)
                 + "".join(f" -{c}" for c, on in consent.items() if not on),
                 "reachable " + _names(f["reachable"]) if "reachable" in f else None, f.get("timezone")]
        return ", ".join(p for p in parts if p)
    if kind == "order_placed" and "order_id" in f:
        lines = ", ".join(f"{line.get('sku')}×{line.get('quantity', 1)} {line.get('role')}" for line in f["lines"])
        extra = [f"subscription {f['subscription_id']}" if f.get("subscription_id") else None,
                 "offline" if f.get("sales_channel") == "offline" else None]
        return "; ".join([f"{f['order_id']}: {lines}", *(e for e in extra if e)])
    if kind == "sample_requested" and "order_id" in f:
        return f"{f['order_id']}: {f.get('sku')} ({f.get('days_supply')} days)"
    if kind in ("subscription_started", "subscription_interval_changed") and "subscription_id" in f:
        sku = f" {f['sku']}" if f.get("sku") else ""
        return f"{f['subscription_id']}:{sku} every {f.get('interval_days')} days"
    if kind == "consent_changed" and "channel" in f:
        return f"{f['channel']} {'granted' if f.get('granted') else 'withdrawn'}"
    return " ".join(str(f[name]) for name in SALIENT.get(kind, ()) if name in f)


def _names(channels) -> str:
    return ",".join(channels) or "none"
