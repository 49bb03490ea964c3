"""Inputs and results of the member workflow, its queries and its activities.

One model in, one model out, so fields can be added later with defaults.
"""

from __future__ import annotations

import zlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from workflows.events import Channel, MemberEvent, SalesChannel
from workflows.lifecycle import MemberState, Stage, SubscriptionStatus
from workflows.rules import PolicyConfig
from workflows.projection import ProjectionLog, ProjectionRequest
from workflows.touches import Outcome, PlannedTouch, TouchRecord


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemberInput(_Message):
    member_id: str
    policy: PolicyConfig = PolicyConfig()
    # Carried across continue-as-new: the state so far and events not yet folded in.
    state: MemberState | None = None
    pending_events: tuple[MemberEvent, ...] = ()
    # Touches planned before continue-as-new, so one that vanishes later is still closed.
    planned: tuple[PlannedTouch, ...] = ()
    projection: ProjectionLog = ProjectionLog()
    # Set by the ingress and `goldenroute member restore`: a run that starts without a
    # carried state first reloads the member's event log and decided touches from
    # PostgreSQL, so a member whose run failed or was terminated never restarts empty.
    restore: bool = False
    refused_events: tuple[str, ...] = ()  # carried so an operator still sees them after continue-as-new
    # The version of the shop's configuration the member last decided under (CONFIG_PATCH):
    # its first decision under a newer one is a transition (workflows.versions).
    config_version: int | None = None
    # The patches (``workflow.patched`` ids) the run was started with by code that has them
    # all (workflows.member.BORN_WITH): it takes their new branch without recording a marker
    # and a TemporalChangeVersion upsert for each at its first task. Empty: a run started
    # before this field existed asks ``workflow.patched`` as it always did.
    born_with: frozenset[str] = frozenset()


class RestoreRequest(_Message):
    member_id: str


class RestoredMember(_Message):
    """What PostgreSQL knows of a member: its logged events (arrival order) and decided touches."""

    member_id: str
    events: tuple[MemberEvent, ...] = ()
    touches: tuple[TouchRecord, ...] = ()
    last_seq: int = 0  # the event log's last sequence number for the member: new events log after it


class MemberResult(_Message):
    member_id: str
    stage: Stage


class MemberStateView(_Message):
    """The ``state`` query: what an operator asks of one member."""

    member_id: str
    stage: Stage
    purchase_count: int
    subscription_status: SubscriptionStatus
    registered_at: datetime | None
    last_main_purchase_at: datetime | None
    next_touch_at: datetime | None
    planned: tuple[PlannedTouch, ...]
    consented_channels: tuple[Channel, ...]
    reachable_channels: tuple[Channel, ...]
    # Events the workflow refused to fold: another member's, or carrying contact data.
    refused_events: tuple[str, ...] = ()
    # The profile, for `goldenroute member` (None from a worker that predates them).
    sales_channel: SalesChannel | None = None
    timezone: str | None = None
    config_version: int | None = None  # of the shop's configuration, at the member's last decision


class Timeline(_Message):
    """The ``timeline`` query: every touch so far (the newest, in the carried state) with its outcome."""

    member_id: str
    touches: tuple[TouchRecord, ...]


class DeliveryRequest(_Message):
    """One touch with its decided outcome; only ``sent`` touches reach a channel adapter."""

    member_id: str
    key: str
    scenario: str
    step: str
    occurrence: str
    channel: Channel | None
    outcome: Outcome
    reason: str
    due_at: datetime
    decided_at: datetime
    variant: str | None = None
    upsell: bool = False  # include the subscription-upsell block in the message
    context: dict[str, str] = {}
    # The member's new events and snapshot, written in the same transaction as the touch.
    projection: ProjectionRequest | None = None
    # The version of the shop's configuration the touch was decided under: its copy, sender
    # and products are that version's. None: decided before versions existed (the current one).
    config_version: int | None = None


class OutcomeBatch(_Message):
    """Touches that end without a send (cancelled, expired, holdout, suppressed), recorded together."""

    member_id: str
    touches: tuple[DeliveryRequest, ...] = ()
    projection: ProjectionRequest | None = None


class OutcomeBatchResult(_Message):
    recorded: int


class DeliveryResult(_Message):
    key: str
    recorded: bool  # False: the key was already recorded (a retry or a replay)
    sent: bool
    delivered_at: datetime | None = None


class EraseRequest(_Message):
    member_id: str
    requested_at: datetime


class EraseResult(_Message):
    member_id: str
    contacts_deleted: int
    deliveries_redacted: int
    call_center_tasks_cancelled: int = 0
    inserts_withdrawn: int = 0


class Dormant(BaseModel):
    """What a cached member's run holds between two activations, as one deflated blob
    (``freeze``/``thaw``): a few kB of bytes, which the garbage collector does not walk,
    instead of a tree of some hundred model objects a member (issue 14: worker memory and
    GC pauses with 10,000 members cached). The same fields continue-as-new carries."""

    model_config = ConfigDict(extra="forbid")

    state: MemberState
    planned: tuple[PlannedTouch, ...]
    projection: ProjectionLog


def freeze(state: MemberState, planned: tuple[PlannedTouch, ...], projection: ProjectionLog) -> bytes:
    return zlib.compress(Dormant(state=state, planned=planned, projection=projection).model_dump_json().encode(), 1)


def thaw(blob: bytes) -> Dormant:
    return Dormant.model_validate_json(zlib.decompress(blob))
