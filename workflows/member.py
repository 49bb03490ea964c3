"""MemberWorkflow: the thin durable shell around the pure core.

One workflow per member (id ``member-{member_id}``). Order systems signal-with-start
it, one event per signal. The loop folds new events into the state, lets the
policy decide every touch that is due, hands each to the delivery activity, and
then sleeps on exactly one durable wait: until the next planned touch, the next
stage change (dormancy), or the next event, whichever comes first.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contacts import ContactActivities
    from activities.delivery import DeliveryActivities
    from activities.projection import ProjectionActivities
    from activities.restore import RestoreActivities
    from workflows import ledger, lifecycle, messages, policy, search, versions
    from workflows.events import Channel, MemberEvent, MemberRegistered
    from workflows.lifecycle import MemberState, Stage
    from workflows.messages import (
        DeliveryRequest,
        OutcomeBatch,
        EraseRequest,
        MemberInput,
        MemberResult,
        MemberStateView,
        RestoreRequest,
        Timeline,
    )
    from workflows.projection import ProjectionLog, ProjectionRequest
    from workflows.rules import Rules
    from workflows.touches import Outcome, PlannedTouch, TouchRecord

# A channel outage must not lose a touch: retry with backoff for up to a day.
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10))
DELIVERY_TIMEOUT = timedelta(seconds=30)
DELIVERY_GIVE_UP = timedelta(days=1)
# Erasure is a legal duty: retry until it succeeds.
ERASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10))
PROJECTION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
# Members started before the event log and the members table existed replay without them.
PROJECTION_PATCH = "project-member-to-postgres"
# Touches that end without a send are recorded in one activity per wake-up, not one each.
BATCH_PATCH = "record-unsent-outcomes-together"
# The exact ledger: a grace period before "at once", withdrawn touches that can come
# back, covered_by within one wake-up, the bounded ledger, refusal of foreign events,
# restore from the event log and recording that retries until it succeeds.
LEDGER_PATCH = "exact-ledger-and-grace"
# The ingress writes the event log before it forwards an event (durable acceptance):
# the workflow writes only the members snapshot.
INGRESS_LOG_PATCH = "event-log-written-by-the-ingress"
# Each decision reads the version of the shop's configuration in force at its time
# (workflows.versions), not the policy fixed in the input at the member's first start.
CONFIG_PATCH = "shop-config-versions"
# A message to a member over a vendor's network (issue 11) is sent on its channel's own task
# queue, which has its own rate limit and workers: a LINE outage does not hold back email.
CHANNEL_QUEUES_PATCH = "deliveries-on-channel-task-queues"
NETWORK_CHANNELS = frozenset({Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH})
# NextTouchAt lives in the members read model only (SPEC §6), not in a search attribute that
# cost an upsert at nearly every wake-up (99 of 140 upserts of the cost benchmark's year).
NEXT_TOUCH_PATCH = "next-touch-at-in-the-read-model-only"
# Continue-as-new as the run's own history grows (issue 14): an open history is billed by the
# GB-hour for as long as the run is open, and a member's run is open for years. The next run
# starts from the carried state alone (about 2 kB deflated), so the open history stays near
# that size instead of growing all year. A run continues only at a wake-up that starts a new
# timer anyway (not while an event leaves the pending one in place), so a continuation costs
# one action, its start. It continues once it has grown by HISTORY_GROWTH bytes, or earlier,
# from MIN_GROWTH, when what it has grown would otherwise sit open until the next wake-up for
# more than that action's price: $50 per million actions against $0.042 per GB-hour is 1.19
# MB-hours (a member quiet for a month continues at once, not a year later). No wake-up
# planned: a year. bench.cost: $0.0154 -> $0.0055 a member-year with the deflated payloads.
HISTORY_BUDGET_PATCH = "continue-as-new-on-history-growth"
HISTORY_GROWTH = 8_000
MIN_GROWTH = 2_000
BREAK_EVEN_BYTE_HOURS = 1_190_000
NEW_RUN_BYTES = 1_000  # what a new run adds besides the carried state: its first task, patch markers
IDLE = timedelta(days=365)
# Issue 14, two changes of what a run does, under one patch (one marker a run, not two):
# - S11 is entered on day 90 (SPEC §4: "latest main purchase ordered 90 days ago"), not at the
#   purchase: a main purchase before then withdraws its steps without an outcome
#   (scenarios.plan), where it recorded two `cancelled` S11 touches for every repeat purchase,
#   and woke at the grace period's end to do it (45 outcomes, 31 activities and as many timers
#   of the cost benchmark's year).
# - A change of the search attributes at a wake-up that starts a new timer anyway continues the
#   run as new with them, once the run has grown by more than a new run adds: one action, as the
#   upsert was, and the history starts small again.
LEAN_PATCH = "s11-entered-on-day-90-search-attributes-by-continue-as-new"
# The patches above but the last: a run started by this code (the ingress, `member restore`, the preview,
# continue-as-new) is born with them and records no marker for them (MemberInput.born_with):
# eight markers and eight TemporalChangeVersion upserts less at each new member's first task.
# A patch added later is asked with workflow.patched as usual, and joins this set only once
# every worker that may pick up a run started with it has it.
BORN_WITH = frozenset({LEDGER_PATCH, INGRESS_LOG_PATCH, CONFIG_PATCH, BATCH_PATCH, PROJECTION_PATCH,
                       CHANNEL_QUEUES_PATCH, NEXT_TOUCH_PATCH, HISTORY_BUDGET_PATCH})
# HISTORY_BUDGET_PATCH joined in the release after its own: a marker and an upsert less at every
# continued run. A rolling deploy straight from a release before it stops the old workers first.
# LEAN_PATCH is new in this release and is still asked.
RESTORE_TIMEOUT = timedelta(minutes=1)
MAX_REFUSED = 20


def workflow_id(member_id: str) -> str:
    return f"member-{member_id}"


def channel_queue(task_queue: str, channel: Channel) -> str:
    """The task queue a channel's sends run on: ``goldenroute.line``, ``goldenroute.email``, …"""
    return f"{task_queue}.{channel.value}"


class _Thawed:
    """A MemberWorkflow attribute kept in ``NAME_live`` and thawed from the run's frozen blob on
    first use in an activation (``MemberWorkflow._freeze``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._live = f"{name}_live"

    def __get__(self, run, owner: type | None = None):
        return getattr(run._thawed(), self._live)

    def __set__(self, run, value) -> None:
        setattr(run._thawed(), self._live, value)


@workflow.defn
class MemberWorkflow:
    @workflow.init
    def __init__(self, input: MemberInput) -> None:
        self._member_id = input.member_id
        self._policy = input.policy
        self._dormant: bytes | None = None  # between activations: the three below, frozen (_sleep_until_next)
        self._carried = input.state is not None
        self._state = input.state or lifecycle.new_member(input.member_id)
        self._inbox: list[MemberEvent] = list(input.pending_events)
        self._planned = {t.key: t for t in input.planned}
        self._wake_at: datetime | None = None
        self._projection = input.projection
        # The SDK keeps the run's input for as long as the run is open; the run has taken these
        # over and freezes them between activations: let the input go of them too.
        for name, empty in (("state", None), ("planned", ()), ("pending_events", ()),
                            ("projection", ProjectionLog())):
            object.__setattr__(input, name, empty)
        self._timer: asyncio.Future | None = None
        self._timer_at: datetime | None = None
        self._exact = False  # set at the start of ``run``: LEDGER_PATCH
        self._ingress_logs = False  # INGRESS_LOG_PATCH
        self._refused: list[str] = list(input.refused_events)
        self._configured = False  # CONFIG_PATCH
        self._next_touch_in_read_model = False  # NEXT_TOUCH_PATCH
        self._born_with = input.born_with
        self._version: int | None = input.config_version  # of the member's last decision
        self._rules = Rules(policy=input.policy)
        self._previous: tuple[Rules, datetime] | None = None  # at a transition: the rules before, since when
        self._lean = False  # LEAN_PATCH: S11 from day 90, search attributes by continue-as-new

    # The member's state, planned touches and projection bookkeeping: live during an
    # activation, a deflated blob (messages.freeze) while the run waits in the worker's cache.
    _state: MemberState = _Thawed()  # type: ignore[assignment]
    _planned: dict[str, PlannedTouch] = _Thawed()  # type: ignore[assignment]
    _projection: ProjectionLog = _Thawed()  # type: ignore[assignment]

    def _thawed(self) -> MemberWorkflow:
        if self._dormant is not None:
            dormant, self._dormant = messages.thaw(self._dormant), None
            self._state_live, self._projection_live = dormant.state, dormant.projection
            self._planned_live = {t.key: t for t in dormant.planned}
        return self

    def _freeze(self) -> None:
        if self._dormant is None:
            self._dormant = messages.freeze(self._state_live, tuple(self._planned_live.values()),
                                            self._projection_live)
            del self._state_live, self._planned_live, self._projection_live

    @workflow.signal
    def event(self, event: MemberEvent) -> None:
        """One order-system event. Validated at the edge; folded in by the main loop."""
        self._inbox.append(event)

    @workflow.query
    def state(self) -> MemberStateView:
        state = self._state
        latest = state.latest_main_purchase()
        return MemberStateView(
            member_id=self._member_id,
            stage=state.stage,
            purchase_count=state.purchase_count,
            subscription_status=state.subscription_status,
            registered_at=state.registered_at,
            last_main_purchase_at=latest.placed_at if latest else None,
            next_touch_at=self._next_touch_at(),
            planned=tuple(self._planned.values()),
            consented_channels=tuple(c for c, granted in sorted(state.consent.items()) if granted),
            reachable_channels=tuple(sorted(state.profile.reachable)),
            refused_events=tuple(self._refused),
            sales_channel=state.profile.sales_channel,
            timezone=state.profile.timezone,
            config_version=self._version if self._configured else None,
        )

    @workflow.query
    def timeline(self) -> Timeline:
        return Timeline(member_id=self._member_id, touches=self._state.touches)

    @workflow.run
    async def run(self, input: MemberInput) -> MemberResult:
        self._exact = self._patched(LEDGER_PATCH)
        self._ingress_logs = self._exact and self._patched(INGRESS_LOG_PATCH)
        self._configured = self._exact and self._patched(CONFIG_PATCH)
        self._next_touch_in_read_model = self._configured and self._patched(NEXT_TOUCH_PATCH)
        carried = self._carried
        budgeted = self._next_touch_in_read_model and self._patched(HISTORY_BUDGET_PATCH)
        self._lean = budgeted and self._patched(LEAN_PATCH)
        born_at_bytes = workflow.info().get_current_history_size()
        if self._exact and input.restore and not carried:
            self._choose_rules(carried)
            await self._restore()
        published = _current_search_attributes()
        while True:
            self._choose_rules(carried)
            self._absorb_events()
            await self._settle_touches()
            # NEXT_TOUCH_PATCH: NextTouchAt is unset (once, for a run that had it), never set again.
            next_touch_at = None if self._next_touch_in_read_model else self._next_touch_at()
            wanted = search.values_of(self._state, next_touch_at)
            if self._state.stage is Stage.ERASED:
                _publish_search_attributes(wanted, published)
                await self._erase()
                return MemberResult(member_id=self._member_id, stage=self._state.stage)
            info = workflow.info()
            grown = info.get_current_history_size() - born_at_bytes
            continuing = info.is_continue_as_new_suggested() or (budgeted and not self._timer_holds() and (
                self._worth_continuing(grown)
                or (self._lean and wanted != published and grown > NEW_RUN_BYTES)))
            if not (continuing and self._lean):  # LEAN_PATCH: the next run is started with them
                published = _publish_search_attributes(wanted, published)
            if continuing:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(MemberInput(
                    member_id=self._member_id, policy=self._policy, state=self._state,
                    pending_events=tuple(self._inbox), planned=tuple(self._planned.values()),
                    projection=self._projection, restore=input.restore,
                    refused_events=tuple(self._refused), config_version=self._version,
                    born_with=BORN_WITH,
                ), search_attributes=search.typed(wanted) if self._lean else None)
            await self._sleep_until_next()

    def _patched(self, patch: str) -> bool:
        """``workflow.patched``, except for a patch the run was born with (BORN_WITH)."""
        return patch in self._born_with or workflow.patched(patch)

    def _choose_rules(self, carried: bool) -> None:
        """The version of the shop's configuration in force now, and whether this is the
        member's first decision under it (a ``Transition``: nothing retroactive)."""
        if not self._configured:
            return
        book = versions.book_for(workflow.info().task_queue)
        # BookNotCurrent (the worker's book is stale) fails the task; Temporal retries it.
        choice = versions.choose(book, workflow.now(), self._version, carried, Rules(policy=self._policy))
        self._rules, self._previous = choice.rules, choice.previous

    def _absorb_events(self) -> None:
        state = lifecycle.advance_clock(self._state, workflow.now())
        loyalty = self._rules.loyalty()
        for event in self._inbox:
            if self._exact and (why := self._refusal(event)):
                workflow.logger.warning("event refused", extra={"event_id": event.event_id, "why": why})
                self._refused = [*self._refused, f"{event.event_id}: {why}"][-MAX_REFUSED:]
                continue
            state = lifecycle.apply(state, event, loyalty)
            if not self._ingress_logs:
                self._projection.log(event)
        self._inbox.clear()
        self._state = state

    def _refusal(self, event: MemberEvent) -> str | None:
        """Why an event that bypassed the ingress must not be folded in, if it must not."""
        if event.member_id != self._member_id:
            return f"member_id is {event.member_id!r}, not this member"
        if isinstance(event, MemberRegistered) and event.contact is not None:
            return "contact data must go through the ingress, never to a workflow"
        return None

    async def _restore(self) -> None:
        """A run that starts empty takes over the member's event log and decided touches,
        so a member whose run failed or was terminated goes on where it was."""
        restored = await workflow.execute_activity_method(
            RestoreActivities.load_member_log, RestoreRequest(member_id=self._member_id),
            start_to_close_timeout=RESTORE_TIMEOUT, retry_policy=PROJECTION_RETRY,
        )
        state = self._state
        loyalty = self._rules.loyalty()
        for event in restored.events:
            if self._refusal(event) is None:
                state = lifecycle.apply(state, event, loyalty)
        self._state = ledger.record(state, list(restored.touches), self._rules)
        self._projection.events_seen = max(self._projection.events_seen, restored.last_seq)

    def _record(self, records: list[TouchRecord]) -> None:
        if self._exact:
            self._state = ledger.record(self._state, records, self._rules)
        else:
            self._state = lifecycle.record_touches(self._state, records)

    async def _settle_touches(self) -> None:
        """Carry out the policy's decisions: every touch that ends now gets its one outcome."""
        transition = None
        if self._previous is not None:  # what the rules before called for, with the facts of now
            before, since = self._previous
            transition = policy.Transition(since, policy.planned_dues(self._state, self._planned, before,
                                                                      self._lean))
        settlement = policy.settle(self._state, self._planned, workflow.now(), self._rules, exact=self._exact,
                                   transition=transition, entered_at_first_step=self._lean)
        if self._configured:
            self._version, self._previous = self._rules.version, None
        self._planned = settlement.pending
        self._wake_at = settlement.wake_at
        projection = self._projection_due()
        if self._patched(BATCH_PATCH):
            await self._carry_out_batched(settlement.finished, projection)
            return
        for n, (touch, record) in enumerate(settlement.finished, start=1):
            carried = projection if n == len(settlement.finished) else None
            record = await self._deliver(touch, record, carried)
            self._record([record])
        if projection is not None:
            if not settlement.finished:
                await workflow.execute_activity_method(
                    ProjectionActivities.project, projection,
                    start_to_close_timeout=DELIVERY_TIMEOUT, retry_policy=PROJECTION_RETRY,
                )
            self._projection.wrote(projection)

    async def _carry_out_batched(self, finished: list[tuple[PlannedTouch, TouchRecord]],
                                 projection: ProjectionRequest | None) -> None:
        """One activity per sent touch; every other outcome of this wake-up, and the
        projection, in one more (or riding on the last send when nothing else ends)."""
        unsent = [(t, r) for t, r in finished if r.outcome is not Outcome.SENT]
        sent = [(t, r) for t, r in finished if r.outcome is Outcome.SENT]
        if unsent or (projection is not None and not sent):
            await workflow.execute_activity_method(
                DeliveryActivities.record_outcomes,
                OutcomeBatch(member_id=self._member_id, touches=tuple(self._request(t, r, None) for t, r in unsent),
                             projection=projection),
                start_to_close_timeout=DELIVERY_TIMEOUT, retry_policy=PROJECTION_RETRY,
            )
        decided = {r.key: r for _, r in unsent}
        for n, (touch, record) in enumerate(sent, start=1):
            carried = projection if not unsent and n == len(sent) else None
            decided[record.key] = await self._deliver(touch, record, carried)
        self._record([decided[r.key] for _, r in finished])
        if projection is not None:
            self._projection.wrote(projection)

    def _projection_due(self) -> ProjectionRequest | None:
        """The events and snapshot to write to PostgreSQL now, if anything changed."""
        if not self._patched(PROJECTION_PATCH):
            self._projection.unwritten.clear()
            return None
        return self._projection.due(self._state, self._next_touch_at())

    async def _deliver(self, touch: PlannedTouch, record: TouchRecord,
                       projection: ProjectionRequest | None) -> TouchRecord:
        """Record the touch and, if sent, send it; a send that fails for good is recorded suppressed."""
        try:
            await self._run_delivery(touch, record, projection)
            return record
        except ActivityError as error:
            cause = error.cause
            kind = cause.type if isinstance(cause, ApplicationError) and cause.type else "error"
            workflow.logger.warning("touch delivery failed", extra={"key": record.key, "error": str(cause)})
            failed = record.model_copy(update={
                "outcome": Outcome.SUPPRESSED, "reason": f"delivery_failed:{kind}", "channel": record.channel,
            })
            await self._run_delivery(touch, failed, projection)  # only records: it cannot fail to send
            return failed

    def _request(self, touch: PlannedTouch, record: TouchRecord,
                 projection: ProjectionRequest | None) -> DeliveryRequest:
        return DeliveryRequest(
            member_id=self._member_id, key=record.key, scenario=record.scenario,
            step=record.step, occurrence=record.occurrence, channel=record.channel,
            outcome=record.outcome, reason=record.reason, due_at=record.due_at,
            decided_at=record.decided_at, variant=record.variant, upsell=record.upsell,
            context=touch.context, projection=projection,
            config_version=self._version if self._configured else None,
        )

    async def _run_delivery(self, touch: PlannedTouch, record: TouchRecord,
                            projection: ProjectionRequest | None) -> None:
        # No infrastructure fault fails a member: a send or a record retries until it
        # succeeds; only a send the channel refuses for good (non-retryable) ends it.
        queue = None
        if (record.outcome is Outcome.SENT and record.channel in NETWORK_CHANNELS
                and self._patched(CHANNEL_QUEUES_PATCH)):
            queue = channel_queue(workflow.info().task_queue, record.channel)
        await workflow.execute_activity_method(
            DeliveryActivities.deliver, self._request(touch, record, projection),
            task_queue=queue, start_to_close_timeout=DELIVERY_TIMEOUT,
            schedule_to_close_timeout=None if self._exact else DELIVERY_GIVE_UP,
            retry_policy=DELIVERY_RETRY,
        )

    async def _erase(self) -> None:
        await workflow.execute_activity_method(
            ContactActivities.erase_member,
            EraseRequest(member_id=self._member_id, requested_at=workflow.now()),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=ERASE_RETRY,
        )

    def _next_touch_at(self) -> datetime | None:
        return min((t.send_at for t in self._planned.values()), default=None)

    def _worth_continuing(self, grown: int) -> bool:
        """Whether to continue as new, with the run grown by ``grown`` bytes: past the budget,
        or when the bytes would sit open until the next wake-up for longer than one action
        is worth (a member going quiet for weeks continues at once, not a year later)."""
        if grown > HISTORY_GROWTH:
            return True
        if grown < MIN_GROWTH:
            return False
        until = self._wake_at - workflow.now() if self._wake_at is not None else IDLE
        return (grown - NEW_RUN_BYTES) * until.total_seconds() / 3600 > BREAK_EVEN_BYTE_HOURS

    def _timer_holds(self) -> bool:
        """Whether the pending timer is still the next wake-up (``_sleep_until_next`` keeps it).
        Continuing as new then would lose it and start it again: one timer more."""
        return self._timer is not None and not self._timer.done() and self._timer_at == self._wake_at

    async def _sleep_until_next(self) -> None:
        """The one durable wait: the next touch, the next stage change, or the next event.

        The timer outlives an event that does not move the wake-up (a shipment, a
        duplicate): it is only replaced when the moment changes, so such an event
        costs its signal and nothing more.
        """
        if self._timer is not None and (self._timer.done() or self._timer_at != self._wake_at):
            self._timer.cancel()
            self._timer = None
        if self._timer is None and self._wake_at is not None:
            delay = max(self._wake_at - workflow.now(), timedelta(seconds=1))
            self._timer = asyncio.ensure_future(workflow.sleep(delay))
            self._timer_at = self._wake_at
        timer = self._timer
        self._freeze()
        await workflow.wait_condition(
            lambda: bool(self._inbox) or (timer is not None and timer.done())
            or workflow.info().is_continue_as_new_suggested()
        )


def _current_search_attributes() -> dict[str, object]:
    attributes = workflow.info().typed_search_attributes
    return {key.name: attributes.get(key) for key in search.ALL}


def _publish_search_attributes(wanted: dict[str, object], published: dict[str, object]) -> dict[str, object]:
    """Upsert the search attributes whose value changed; returns what is now published."""
    updates = [key.value_set(wanted[key.name]) if wanted[key.name] is not None else key.value_unset()
               for key in search.ALL if published.get(key.name) != wanted[key.name]]
    if updates:
        workflow.upsert_search_attributes(updates)
    return wanted
