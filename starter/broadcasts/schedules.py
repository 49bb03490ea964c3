"""Recurring broadcasts as Temporal Schedules: one per broadcast with a ``schedule`` (cron)
in its configuration, id ``broadcast-{name}``, read in the shop's timezone.

Each firing starts a ``BroadcastWorkflow`` without a run id: the run is named after the
time the schedule fired it (``20261207T0100Z``). A firing while the previous run is still
sending is skipped (``ScheduleOverlapPolicy.SKIP``): a newsletter never goes out twice at
once. A firing missed while Temporal was down is made up within ``CATCHUP``, not later.
The schedule carries the broadcast's definition as it was when scheduled (the segment's
criteria too): ``goldenroute broadcast schedule`` again takes up a changed configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleHandle, ScheduleOverlapPolicy, SchedulePolicy,
    ScheduleSpec, ScheduleUpdate, ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, schedule_id

CATCHUP = timedelta(hours=6)
_CRON = "cron"  # the memo key of the cron as configured (Temporal describes it as calendars)


@dataclass(frozen=True)
class Wanted:
    name: str
    cron: str
    timezone: str
    input: BroadcastInput  # run and as_of left out: each firing's own


@dataclass(frozen=True)
class Scheduled:
    cron: str | None
    timezone: str | None
    input: BroadcastInput | None
    paused: bool = False
    next: tuple[datetime, ...] = ()  # the next firings Temporal has computed


def schedule(wanted: Wanted, task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(BroadcastWorkflow.run, wanted.input, id=schedule_id(wanted.name),
                                           task_queue=task_queue, memo={_CRON: wanted.cron}),
        spec=ScheduleSpec(cron_expressions=[wanted.cron], time_zone_name=wanted.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP),
    )


async def current(client: Client, name: str) -> Scheduled | None:
    """The broadcast's schedule as Temporal has it, or None."""
    try:
        described = await client.get_schedule_handle(schedule_id(name)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    action = described.schedule.action
    cron = found = None
    if isinstance(action, ScheduleActionStartWorkflow):
        converter = client.data_converter
        if _CRON in action.memo:
            [cron] = await converter.decode([action.memo[_CRON]], [str])
        try:
            [found] = await converter.decode(list(action.args), [BroadcastInput])
        except Exception:  # noqa: BLE001 — an input of an older shape: it is replaced
            found = None
    return Scheduled(cron, described.schedule.spec.time_zone_name, found, described.schedule.state.paused,
                     tuple(described.info.next_action_times[:2]))


async def existing(client: Client, names: list[str]) -> dict[str, Scheduled | None]:
    """Each broadcast's schedule as Temporal has it now (None: there is none).

    One describe per name, not ``list_schedules``: the list comes from Temporal's visibility
    store, which lags a moment behind a schedule just created or deleted.
    """
    return {name: await current(client, name) for name in names}


def changes(before: Scheduled, wanted: Wanted) -> list[str]:
    """What an update changes, in the configuration's words (``cron 0 10 * * MON → 0 9 * * MON``)."""
    lines = []
    if before.cron != wanted.cron:
        lines.append(f"cron {before.cron or '?'} → {wanted.cron}")
    if before.timezone != wanted.timezone:
        lines.append(f"timezone {before.timezone or '?'} → {wanted.timezone}")
    if before.input is None:
        return [*lines, "definition replaced (it had another shape)"]
    old, new = before.input.model_dump(mode="json"), wanted.input.model_dump(mode="json")
    for key in new:
        if old.get(key) != new[key]:
            shown = "criteria changed" if key == "segment" else f"{_text(old.get(key))} → {_text(new[key])}"
            lines.append(f"{key} {shown}")
    return lines


def _text(value) -> str:
    return "none" if value is None else str(value)


async def put(client: Client, wanted: Wanted, task_queue: str) -> tuple[str, list[str]]:
    """Create or update the broadcast's schedule: ("created" | "updated" | "unchanged", changes)."""
    before = await current(client, wanted.name)
    desired = schedule(wanted, task_queue)
    if before is None:
        await client.create_schedule(schedule_id(wanted.name), desired)
        return "created", []
    changed = changes(before, wanted)
    if not changed:
        return "unchanged", []

    def update(input: ScheduleUpdateInput) -> ScheduleUpdate:
        desired.state = input.description.schedule.state  # paused or not, as the operator left it
        return ScheduleUpdate(schedule=desired)

    await client.get_schedule_handle(schedule_id(wanted.name)).update(update)
    return "updated", changed


async def remove(client: Client, name: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id(name)).delete()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def scheduled_names(client: Client) -> list[str]:
    """Every broadcast Temporal has a schedule of (configured or not)."""
    prefix = schedule_id("")
    names = []
    async for listed in await client.list_schedules():
        if listed.id.startswith(prefix):
            names.append(listed.id.removeprefix(prefix))
    return sorted(names)


async def next_runs(client: Client, name: str, count: int = 2) -> list:
    handle: ScheduleHandle = client.get_schedule_handle(schedule_id(name))
    return list((await handle.describe()).info.next_action_times[:count])
