"""What a member workflow writes to PostgreSQL's read model: a pure function of the state.

``goldenroute db rebuild`` uses the same function over the event log, so the
rebuilt ``members`` table and the one the workflows wrote agree.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from workflows.events import MemberEvent
from workflows.lifecycle import MemberState


class MemberSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    stage: str
    purchase_count: int
    subscription_status: str
    sales_channel: str
    registered_at: datetime | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    next_touch_at: datetime | None
    revenue: int


class LoggedEvent(BaseModel):
    """An accepted event with the member's sequence number (its order of arrival)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    event: MemberEvent


class ProjectionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    version: int  # grows with every projection of this member; older writes lose
    events: tuple[LoggedEvent, ...] = ()
    snapshot: MemberSnapshot


class ProjectionResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    events_recorded: int
    snapshot_written: bool


def snapshot(state: MemberState, next_touch_at: datetime | None) -> MemberSnapshot:
    mains = state.main_purchases()
    first_main = state.archived.first_main_at or (mains[0].placed_at if mains else None)
    revenue = state.archived.revenue + sum(o.revenue for o in state.placed())
    return MemberSnapshot(
        member_id=state.member_id,
        stage=state.stage.value,
        purchase_count=state.purchase_count,
        subscription_status=state.subscription_status.value,
        sales_channel=state.profile.sales_channel.value,
        registered_at=state.registered_at,
        first_purchase_at=first_main,
        last_purchase_at=mains[-1].placed_at if mains else None,
        next_touch_at=next_touch_at,
        revenue=revenue,
    )


class ProjectionLog(BaseModel):
    """The workflow's bookkeeping of what it has written to PostgreSQL; carried across continue-as-new."""

    model_config = ConfigDict(extra="forbid")

    events_seen: int = 0  # the last sequence number given out
    version: int = 0  # of the last projection written
    unwritten: list[LoggedEvent] = []
    written: MemberSnapshot | None = None

    def log(self, event: MemberEvent) -> None:
        self.events_seen += 1
        self.unwritten.append(LoggedEvent(seq=self.events_seen, event=event))

    def due(self, state: MemberState, next_touch_at: datetime | None) -> ProjectionRequest | None:
        """What to write now, if the event log or the snapshot has anything new."""
        current = snapshot(state, next_touch_at)
        if not self.unwritten and current == self.written:
            return None
        return ProjectionRequest(member_id=state.member_id, version=self.version + 1,
                                 events=tuple(self.unwritten), snapshot=current)

    def wrote(self, request: ProjectionRequest) -> None:
        self.version = request.version
        self.written = request.snapshot
        self.unwritten = [e for e in self.unwritten if e.seq > request.events[-1].seq] if request.events else self.unwritten
