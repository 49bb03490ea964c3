"""BroadcastWorkflow: one run of a broadcast — a template to a segment — requested of each
member exactly once, at the broadcast's rate, resumable wherever it stopped.

Workflow id ``broadcast-{name}-{run}`` (``broadcast_messages.workflow_id``; a schedule's
runs: ``broadcast-{name}-{scheduled time}``), so a second start of a run is refused.
The run's audience is frozen first (``broadcast_members``); then page by page, in member
id order, each member's ``broadcast_requested`` goes into the event log through the
ingress and on to the member's workflow, which decides the touch under its own policy
(``workflows.broadcasts``). The workflow keeps only the cursor: a worker killed half-way
resumes from the last page done, and a page it interrupted is requested again (the event
log keeps each member's request once). It ends once every request has reached its
member's workflow. Cancelled (``goldenroute broadcast cancel``), it stops between pages:
members already requested still get their touch.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.broadcast import BroadcastActivities
    from workflows.broadcast_messages import (
        BroadcastInput, BroadcastProgress, CloseRequest, PageRequest, RunRef, SnapshotRequest, Stage, run_id,
    )

# The database or Temporal unavailable: a page waits and retries, it never fails the run.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# A killed worker's page is retried once its heartbeat is missed, not after its whole timeout.
PAGE_TIMEOUT = timedelta(minutes=5)
HEARTBEAT = timedelta(seconds=10)
SNAPSHOT_TIMEOUT = timedelta(minutes=10)
SHORT = timedelta(minutes=1)
# How often the run's end looks again for requests another forwarder (or an outage) holds.
FORWARD_AGAIN = timedelta(seconds=10)
# Set by Temporal on a workflow a schedule started: the run is named after it.
SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn
class BroadcastWorkflow:
    @workflow.init
    def __init__(self, input: BroadcastInput) -> None:
        self._progress = input.progress or BroadcastProgress(name=input.name, run=input.run or "")

    @workflow.query
    def progress(self) -> BroadcastProgress:
        return self._progress

    @workflow.run
    async def run(self, input: BroadcastInput) -> BroadcastProgress:
        try:
            if input.progress is None:
                await self._snapshot(input)
            if self._progress.stage is Stage.REQUESTING:
                await self._request_pages(input)
            await self._forward_rest()
        except asyncio.CancelledError:
            await self._close("cancelled")
            raise
        await self._close("finished")
        return self._progress

    async def _snapshot(self, input: BroadcastInput) -> None:
        at = _run_time()
        run = input.run or run_id(at)
        as_of = input.as_of or at
        self._update(run=run, requested_at=at, as_of=as_of)
        audience = await workflow.execute_activity_method(
            BroadcastActivities.snapshot_audience,
            SnapshotRequest(broadcast=input, run=run, workflow_id=workflow.info().workflow_id,
                            requested_at=at, as_of=as_of),
            start_to_close_timeout=SNAPSHOT_TIMEOUT, retry_policy=RETRY,
        )
        self._update(audience=audience.members, stage=Stage.REQUESTING)

    async def _request_pages(self, input: BroadcastInput) -> None:
        """Page after page from the cursor, each spaced so the run keeps to its rate."""
        while True:
            began = workflow.now()
            p = self._progress
            page = await workflow.execute_activity_method(
                BroadcastActivities.request_page,
                PageRequest(name=p.name, run=p.run, after=p.cursor, size=input.page_size,
                            requested_at=p.requested_at, template=input.template, channel=input.channel,
                            holdout_percent=input.holdout_percent),
                start_to_close_timeout=PAGE_TIMEOUT, heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
            )
            if page.members:
                self._update(cursor=page.last, reached=p.reached + page.members, pages=p.pages + 1,
                             requested=p.requested + page.requested, refused=p.refused + page.refused,
                             unforwarded=p.unforwarded + page.unforwarded)
            if page.members < input.page_size:
                self._update(stage=Stage.FORWARDING)
                return
            spacing = timedelta(seconds=page.members / input.rate_per_second) - (workflow.now() - began)
            if spacing > timedelta(0):
                await workflow.sleep(spacing)
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={
                    "run": self._progress.run, "as_of": self._progress.as_of, "progress": self._progress}))

    async def _forward_rest(self) -> None:
        """The run ends once every request has reached its member's workflow."""
        p = self._progress
        while True:
            left = await workflow.execute_activity_method(
                BroadcastActivities.forward_rest, RunRef(name=p.name, run=p.run),
                start_to_close_timeout=PAGE_TIMEOUT, heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
            )
            self._update(unforwarded=left.unforwarded)
            if not left.unforwarded:
                return
            await workflow.sleep(FORWARD_AGAIN)

    async def _close(self, status: str) -> None:
        p = self._progress
        if not p.run:  # cancelled before the run had a name: nothing was written
            self._update(stage=Stage.CANCELLED)
            return
        await workflow.execute_activity_method(
            BroadcastActivities.close_run, CloseRequest(name=p.name, run=p.run, status=status),
            start_to_close_timeout=SHORT, retry_policy=RETRY,
        )
        self._update(stage=Stage(status))

    def _update(self, **changes) -> None:
        self._progress = self._progress.model_copy(update=changes)


def _run_time() -> datetime:
    """The moment the run is of: the time its schedule fired it, else when it was started."""
    scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_AT)
    return scheduled or workflow.info().start_time

