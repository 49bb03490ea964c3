"""Dry-run channels for ``goldenroute preview``: the real activity names and models, nothing leaves the machine.

The member workflow hands every decided touch to ``deliver_touch`` and an erasure
to ``erase_member``; a restored run asks ``load_member_log`` for its past. These
implementations keep each request in memory (the preview's record of every touch;
the workflow's own ``timeline`` keeps only the newest) and never contact a
channel, PostgreSQL or anyone else.
"""

from __future__ import annotations

from temporalio import activity

from workflows.messages import (
    DeliveryRequest,
    DeliveryResult,
    EraseRequest,
    EraseResult,
    OutcomeBatch,
    OutcomeBatchResult,
    RestoredMember,
    RestoreRequest,
)
from workflows.projection import ProjectionRequest, ProjectionResult
from workflows.touches import Outcome


class DryRunChannels:
    """One collection of every touch decided while it served a worker, keyed once per idempotency key."""

    def __init__(self) -> None:
        self._deliveries: dict[str, DeliveryRequest] = {}
        self._erasures: dict[str, EraseRequest] = {}

    @property
    def activities(self) -> list:
        """The activity functions for ``build_worker(..., activity_functions=...)``."""
        return [self.deliver, self.record_outcomes, self.erase_member, self.project, self.load_member_log]

    def deliveries(self, member_id: str | None = None) -> list[DeliveryRequest]:
        """Every touch handed over so far (of one member, if given), in the order it was decided."""
        return [d for d in self._deliveries.values() if member_id is None or d.member_id == member_id]

    def erasure(self, member_id: str) -> EraseRequest | None:
        return self._erasures.get(member_id)

    @activity.defn(name="deliver_touch")
    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Record the touch; a retry or a replay of the same key is recorded once."""
        recorded = request.key not in self._deliveries
        if recorded:
            self._deliveries[request.key] = request
        sent = request.outcome is Outcome.SENT and request.channel is not None
        first = self._deliveries[request.key]
        return DeliveryResult(key=request.key, recorded=recorded, sent=sent,
                              delivered_at=first.decided_at if sent else None)

    @activity.defn(name="record_outcomes")
    async def record_outcomes(self, batch: OutcomeBatch) -> OutcomeBatchResult:
        """The touches that end without a send, kept like any other."""
        new = [r for r in batch.touches if r.key not in self._deliveries]
        for request in new:
            self._deliveries[request.key] = request
        return OutcomeBatchResult(recorded=len(new))

    @activity.defn(name="erase_member")
    async def erase_member(self, request: EraseRequest) -> EraseResult:
        """Nothing was stored, so nothing is deleted; the erasure itself is remembered."""
        self._erasures.setdefault(request.member_id, request)
        return EraseResult(member_id=request.member_id, contacts_deleted=0, deliveries_redacted=0)

    @activity.defn(name="project_member")
    async def project(self, request: ProjectionRequest) -> ProjectionResult:
        """No read model in a preview: the projection is acknowledged and dropped."""
        return ProjectionResult(events_recorded=0, snapshot_written=False)

    @activity.defn(name="load_member_log")
    async def load_member_log(self, request: RestoreRequest) -> RestoredMember:
        """A preview has no event log to restore from: the member starts with nothing."""
        return RestoredMember(member_id=request.member_id)
