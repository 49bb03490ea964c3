"""Temporal Cloud billable actions, counted from workflow histories as Temporal Cloud counts them.

Per https://docs.temporal.io/cloud/actions:

- workflow started: a client start or a continue-as-new (each run's
  ``WorkflowExecutionStarted``), but not a signal-with-start's start: "one total action
  occurs for any Signal-With-Start, regardless of whether the Workflow starts" — a run
  not continued from another whose signal came with the start, before its first task;
- signal sent: every ``WorkflowExecutionSignaled`` (signal-with-start's signal too);
- timer started: every ``TimerStarted`` (cancelled ones too: they were started);
- activity started or retried: every attempt — the ``attempt`` of the activity's
  ``ActivityTaskStarted`` (the server writes that event once, for the last attempt),
  or 1 for an activity scheduled and not (yet) started;
- local activities: one for all those of a workflow task ("Temporal Cloud counts all
  RecordMarkers from each Workflow Task as one action"), i.e. one per distinct
  ``workflow_task_completed_event_id`` among the ``core_local_activity`` markers (a local
  activity's retries within the task are not in the history; none happen here);
- search-attribute upsert: one per ``UpsertWorkflowSearchAttributes`` command,
  however many attributes it sets, except one that only sets ``TemporalChangeVersion``
  (the version marker of ``workflow.patched``), which is exempt;
- query / update received by the worker: the engine issues none; the benchmark makes
  none, and the count says so (updates would show as ``WorkflowExecutionUpdateAccepted``
  / rejected; queries leave no trace in history, so the benchmark counts its own: zero).

Not actions: workflow tasks, markers (``workflow.patched``), timer fired / cancelled,
activity completed, termination.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory
from worker.converter import DATA_CONVERTER, decompress

from workflows.messages import DeliveryRequest
from workflows.touches import Outcome

KINDS = ("workflow started", "signals", "timers", "activities", "search-attribute upserts", "queries+updates")
CHANGE_VERSION = "TemporalChangeVersion"


@dataclass
class Actions:
    by_kind: Counter = field(default_factory=Counter)
    # What the activity attempts were: "deliver_touch:sent", "deliver_touch:cancelled", "project_member", …
    activities: Counter = field(default_factory=Counter)
    # Which attributes each counted upsert set: "NextTouchAt", "LifecycleStage+PurchaseCount", …
    upserts: Counter = field(default_factory=Counter)
    timers_cancelled: int = 0
    # Touches recorded without a send, by scenario and outcome: "S11 cancelled", "S06 suppressed", …
    unsent: Counter = field(default_factory=Counter)
    retries: int = 0  # attempts beyond the first, all activities
    exempt_upserts: int = 0  # TemporalChangeVersion only
    markers: int = 0
    runs: int = 0
    history_events: int = 0
    history_bytes: int = 0
    touches_sent: int = 0  # deliver_touch requests with outcome sent on a channel

    @property
    def total(self) -> int:
        return sum(self.by_kind[k] for k in KINDS)

    def add(self, other: "Actions") -> None:
        self.by_kind.update(other.by_kind)
        self.activities.update(other.activities)
        self.upserts.update(other.upserts)
        self.unsent.update(other.unsent)
        for name in ("timers_cancelled", "retries", "exempt_upserts", "markers", "runs", "history_events", "history_bytes",
                     "touches_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def count(histories: Iterable[WorkflowHistory], queries: int = 0) -> Actions:
    """The billable actions of one workflow, all its runs (``histories``), plus ``queries`` made by the caller."""
    actions = Actions()
    actions.by_kind["queries+updates"] += queries
    for history in histories:
        _count_run(history, actions)
    for kind in KINDS:
        actions.by_kind.setdefault(kind, 0)
    return actions


def _count_run(history: WorkflowHistory, actions: Actions) -> None:
    actions.runs += 1
    actions.history_events += len(history.events)
    actions.history_bytes += History(events=history.events).ByteSize()
    scheduled: dict[int, str] = {}
    local_tasks: dict[int, list[str]] = {}  # workflow task → the local activities it ran
    started_attempt: dict[int, int] = {}
    completed: set[int] = set()
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            # A signal-with-start that started the run is one action in all, its signal's
            # (the server writes the start and the signal together, before the first task).
            if not _signal_with_start(history):
                actions.by_kind["workflow started"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            actions.by_kind["signals"] += 1
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            actions.by_kind["timers"] += 1
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = set(event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            if fields == {CHANGE_VERSION}:
                actions.exempt_upserts += 1
            else:
                actions.by_kind["search-attribute upserts"] += 1
                actions.upserts["+".join(sorted(fields))] += 1
        elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
            actions.timers_cancelled += 1
        elif kind in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
                      EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED):
            actions.by_kind["queries+updates"] += 1
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            attributes = event.marker_recorded_event_attributes
            if attributes.marker_name == LOCAL_ACTIVITY_MARKER:
                local_tasks.setdefault(attributes.workflow_task_completed_event_id, []).append(_local_label(attributes))
            else:
                actions.markers += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = _activity_label(event.activity_task_scheduled_event_attributes, actions)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            started_attempt[attributes.scheduled_event_id] = max(1, attributes.attempt)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed.add(event.activity_task_completed_event_attributes.scheduled_event_id)
    for labels in local_tasks.values():  # one action for all the local activities of a workflow task
        actions.by_kind["activities"] += 1
        actions.activities["+".join(sorted(set(labels))) + " (local)"] += 1
    for event_id, label in scheduled.items():
        attempts = started_attempt.get(event_id, 1)
        if label == SENT:
            if event_id in completed:
                actions.touches_sent += 1
            else:  # failed for good (then recorded suppressed), or still running at the end
                label = f"{SENT} (not completed)"
        actions.by_kind["activities"] += attempts
        actions.activities[label] += attempts
        actions.retries += attempts - 1


SENT = "deliver_touch:sent"


def _signal_with_start(history: WorkflowHistory) -> bool:
    """Whether the run was started by a signal-with-start (the ingress's way): not continued
    from another run, and signalled before its first workflow task started."""
    started = history.events[0].workflow_execution_started_event_attributes
    if started.continued_execution_run_id:
        return False
    for event in history.events[1:]:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            return False
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            return True
    return False
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def _local_label(attributes) -> str:
    """A local activity's type, from its marker (the SDK's marker data: seq, activity_type, …)."""
    data = attributes.details.get("data")
    if data is None or not data.payloads:
        return "local activity"
    try:
        return json.loads(decompress(data.payloads[0]).data).get("activity_type") or "local activity"
    except ValueError:
        return "local activity"


def _activity_label(attributes, actions: Actions) -> str:
    """The activity's name; for a delivery, also the outcome it records (``sent`` only with a channel)."""
    name = attributes.activity_type.name
    if name == "record_outcomes":  # touches ended unsent, and/or the projection
        payloads = [decompress(p) for p in attributes.input.payloads]
        batch = json.loads(payloads[0].data) if payloads else {}
        for touch in batch.get("touches") or ():
            actions.unsent[f"{touch.get('scenario')} {touch.get('outcome')}"] += 1
        return f"{name}:{'unsent touches' if batch.get('touches') else 'projection only'}"
    if name != "deliver_touch":
        return name  # project_member, erase_member, …
    (request,) = DATA_CONVERTER.payload_converter.from_payloads(
        [decompress(p) for p in attributes.input.payloads], [DeliveryRequest])
    if request.outcome is not Outcome.SENT:
        actions.unsent[f"{request.scenario} {request.outcome.value}"] += 1
    if request.outcome is Outcome.SENT and request.channel is None:
        return "deliver_touch:sent (no channel)"
    return f"deliver_touch:{request.outcome.value}"
