"""What ``goldenroute broadcast`` prints: plain text for a marketer, times in the shop's
timezone with a Japanese weekday, counts with thousands separators."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starter.broadcasts.runs import Configured, RunFigures
from starter.broadcasts.schedules import Scheduled
from starter.reports.period import DEFAULT_TIMEZONE
from starter.segments.cli import criteria_text, describe
from starter.segments.store import Found
from starter.table import local_date, scenario_label, table
from workflows.broadcast_messages import BroadcastProgress
from workflows.broadcasts import BROADCAST

__all__ = ["DEFAULT_TIMEZONE", "Schedules", "details", "dry_run", "listing", "live_progress", "schedule_line",
           "scheduled", "started"]

LABEL = scenario_label(BROADCAST)  # BC 一斉配信


def when(moment: datetime | None, zone: str, seconds: bool = False) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local_date(local)} {local.strftime('%H:%M:%S' if seconds else '%H:%M')}"


def holdout_text(found: Configured) -> str:
    own = found.broadcast.holdout_percent
    return f"{own}%" if own is not None else f"{found.policy_holdout}% (policy)"


def suppressed_text(figures: RunFigures) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in figures.suppressed.most_common()) or "-"


class Schedules:
    """What Temporal said of the broadcasts' schedules (``broadcast-{name}``), or why it could not.

    ``found[name]`` is the schedule, None when there is none; ``unreachable`` says why nothing
    is known (then ``found`` is empty)."""

    def __init__(self, found: dict[str, Scheduled | None] | None = None, unreachable: str | None = None) -> None:
        self.found, self.unreachable = found or {}, unreachable

    def known(self, name: str) -> bool:
        return self.unreachable is None and name in self.found


def schedule_line(name: str, found: Configured | None, schedules: Schedules, zone: str) -> str:
    """``show``'s schedule: the configuration's cron, and whether Temporal has a schedule for it."""
    cron = found.broadcast.schedule if found else None
    configured_ = f"{cron} ({found.timezone})" if cron and found else None
    if not schedules.known(name):
        if not configured_:
            return "none: sent by hand" if found else "none in the configuration"
        return f"{configured_}, whether it is scheduled is unknown: {schedules.unreachable or 'not checked'}"
    state = schedules.found[name]
    if state is None:
        if not configured_:
            return "none: sent by hand" if found else "none in the configuration, none in Temporal"
        return f"{configured_}, not scheduled — run goldenroute broadcast schedule {name}"
    nxt = _next(state, zone)
    if not configured_:
        return (f"none in the configuration, yet scheduled in Temporal ({_temporal_cron(state)}): {nxt} — "
                f"goldenroute broadcast unschedule {name} stops it")
    if _differs(state, found):
        return (f"{configured_}, but scheduled as {_temporal_cron(state)}: {nxt} — run goldenroute broadcast "
                f"schedule {name} to take up the configuration")
    return f"{configured_}, scheduled: {nxt}"


def _next(state: Scheduled, zone: str) -> str:
    if state.paused:
        return "paused"
    return f"next {when(state.next[0], zone)}" if state.next else "no next firing"


def _temporal_cron(state: Scheduled) -> str:
    return f"{state.cron or '?'} ({state.timezone or '?'})"


def _differs(state: Scheduled, found: Configured) -> bool:
    return (state.cron is not None and state.cron != found.broadcast.schedule) or (
        state.timezone is not None and state.timezone != found.timezone)


def _scheduled_cell(f: Configured, schedules: Schedules, zone: str) -> str:
    if not schedules.known(f.name):
        return "?" if f.broadcast.schedule else "-"
    state = schedules.found[f.name]
    if state is None:
        return "no" if f.broadcast.schedule else "-"
    cell = _next(state, zone)
    return cell if f.broadcast.schedule and not _differs(state, f) else f"as {state.cron or '?'}: {cell}"


def _schedule_notes(every: list[Configured], schedules: Schedules) -> list[str]:
    if schedules.unreachable is not None:
        return ([f"scheduled: not known — {schedules.unreachable}"] if any(f.broadcast.schedule for f in every)
                else [])
    notes, missing = [], []
    for f in every:
        if not schedules.known(f.name):
            continue
        state = schedules.found[f.name]
        if state is None:
            if f.broadcast.schedule:
                missing.append(f.name)
        elif not f.broadcast.schedule:
            notes.append(f"{f.name}: scheduled in Temporal, but no schedule in the configuration: "
                         f"`goldenroute broadcast unschedule {f.name}` stops it")
        elif _differs(state, f):
            notes.append(f"{f.name}: scheduled as {_temporal_cron(state)}, not as configured: "
                         f"`goldenroute broadcast schedule {f.name}` takes up the configuration")
    if missing:
        notes.insert(0, f"not scheduled in Temporal: {', '.join(missing)} — `goldenroute broadcast schedule` "
                        f"creates {'its schedule' if len(missing) == 1 else 'their schedules'}")
    return notes


def listing(every: list[Configured], done: list[RunFigures], zone: str,
            schedules: Schedules | None = None) -> list[str]:
    schedules = schedules or Schedules(unreachable="Temporal was not asked")
    if every:
        head = [f"{LABEL}: {len(every)} broadcasts in {every[0].origin}"]
        rows = [[f.name, f.broadcast.description, f.broadcast.segment, f.broadcast.template_name(f.name),
                 f.broadcast.channel.value if f.broadcast.channel else "routed", holdout_text(f),
                 f.broadcast.schedule or "by hand", _scheduled_cell(f, schedules, zone)] for f in every]
        head += table(["name", "description", "segment", "template", "channel", "holdout",
                       f"schedule ({zone})", "scheduled"], rows)
        head += _schedule_notes(every, schedules)
    else:
        head = [f"{LABEL}: no broadcasts configured ([broadcasts.NAME] in the shop file, "
                "then `goldenroute config apply FILE`, or --config FILE)"]
    if not done:
        return [*head, "", "no runs yet: `goldenroute broadcast send NAME`"]
    rows = [[r.broadcast, r.run, r.status, when(r.started_at, zone), f"{r.audience:,}", f"{r.requested:,}",
             f"{r.outcomes['sent']:,}", _share(r), suppressed_text(r), f"{r.waiting:,}"] for r in done]
    return [*head, "", "runs (newest first):",
            *table(["broadcast", "run", "status", "started", "audience", "requested", "sent", "holdout",
                    "suppressed", "waiting"], rows, right=(False, False, False, False, True, True, True, True,
                                                           False, True))]


def _share(figures: RunFigures) -> str:
    share = figures.holdout_share
    return f"{figures.outcomes['holdout']:,}" + (f" ({share:.1%})" if share is not None else "")


def dry_run(found: Configured, segment: Found, total: int, rows: list, as_of: datetime) -> list[str]:
    b = found.broadcast
    held = total * found.holdout // 100
    pace = total / b.rate_per_second
    return [
        f"{found.name} ({LABEL}), dry run: nothing is sent",
        f"  description {b.description}",
        f"  template    {b.template_name(found.name)}, {b.channel.value if b.channel else 'routed (LINE → email → SMS → DM)'}",
        f"  audience    {total:,} members of {segment.name} now",
        f"  holdout     about {held:,} ({holdout_text(found)}); consent, quiet hours and the frequency cap "
        "are decided by each member's workflow when it is sent",
        f"  pace        {b.rate_per_second:g} members a second: about {_duration(pace)}",
        "",
        *describe(segment, total, rows, as_of.astimezone(ZoneInfo(found.timezone)), found.timezone),
    ]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def started(found: Configured, segment: Found, run: str, workflow_id: str, total: int) -> list[str]:
    return [
        f"{found.name} ({LABEL}): run {run} started (workflow {workflow_id})",
        f"  audience    the members of {segment.name} as the run starts ({total:,} now)",
        f"  pace        {found.broadcast.rate_per_second:g} members a second",
        f"  follow it   goldenroute broadcast show {found.name} --run {run}",
    ]


async def live_progress(connect, sending: list[RunFigures]) -> dict[str, BroadcastProgress]:
    """The runs still sending, as their workflows answer (none if Temporal is out of reach)."""
    from temporalio.service import RPCError

    from workflows.broadcast import BroadcastWorkflow

    try:
        client = await connect()
    except (RuntimeError, RPCError, OSError):
        return {}
    found = {}
    for figures in sending:
        try:
            found[figures.run] = await client.get_workflow_handle(figures.workflow_id).query(
                BroadcastWorkflow.progress)
        except RPCError:
            continue
    return found


def details(name: str, found: Configured | None, done: list[RunFigures], progress: dict[str, BroadcastProgress],
            zone: str, schedules: Schedules | None = None) -> list[str]:
    schedules = schedules or Schedules(unreachable="Temporal was not asked")
    if found is None:
        lines = [f"{name} ({LABEL}): no longer configured; its runs:"]
        if schedules.known(name) and schedules.found[name] is not None:
            lines.insert(1, f"  schedule    {schedule_line(name, None, schedules, zone)}")
    else:
        b = found.broadcast
        lines = [
            f"{name} ({LABEL}): {b.description}",
            f"  defined in  {found.origin}",
            f"  segment     {b.segment}",
            f"  template    {b.template_name(name)}, {b.channel.value if b.channel else 'routed'}",
            f"  holdout     {holdout_text(found)}",
            f"  schedule    {schedule_line(name, found, schedules, zone)}",
            f"  pace        {b.rate_per_second:g} members a second",
        ]
    if not done:
        return [*lines, "", f"no runs yet: `goldenroute broadcast send {name}` (--dry-run first to see its audience)"]
    for r in done:
        lines += ["", *run_lines(r, progress.get(r.run), zone)]
    return lines


def run_lines(r: RunFigures, live: BroadcastProgress | None, zone: str) -> list[str]:
    finished = f", {r.status} {when(r.finished_at, zone, seconds=True)}" if r.finished_at else ""
    segment = r.definition.get("segment_name", "?")
    criteria = r.definition.get("segment")
    lines = [
        f"run {r.run}: {r.status}",
        f"  started     {when(r.started_at, zone, seconds=True)}{finished}",
        f"  audience    {r.audience:,} members of {segment} as of {when(r.as_of, zone)}"
        + (f" ({_criteria(criteria)})" if criteria else ""),
    ]
    if live is not None:
        lines.append(f"  progress    {live.reached:,} of {live.audience:,} members reached ({live.percent}%), "
                     f"{live.stage.value}")
    refused = f" ({r.refused:,} refused: erased since the audience was taken)" if r.refused else ""
    lines += [
        f"  requested   {r.requested:,}{refused}",
        f"  sent        {r.outcomes['sent']:,}",
        f"  holdout     {_share(r)}",
        f"  suppressed  {sum(r.suppressed.values()):,}" + (f": {suppressed_text(r)}" if r.suppressed else ""),
    ]
    for outcome in ("expired", "cancelled"):
        if r.outcomes[outcome]:
            lines.append(f"  {outcome:<11} {r.outcomes[outcome]:,}")
    lines.append(f"  waiting     {r.waiting:,}" + (" (postponed by quiet hours or the frequency cap, or on their way)"
                                                   if r.waiting else ""))
    return lines


def _criteria(definition: dict) -> str:
    from workflows.segments import Segment

    try:
        return criteria_text(Segment.model_validate(definition))
    except ValueError:
        return "criteria no longer readable"


def scheduled(wanted, done: str, changed: list[str], upcoming: list[datetime]) -> str:
    nxt = ", ".join(when(t, wanted.timezone) for t in upcoming) or "none"
    what = f"{done}: {wanted.cron} ({wanted.timezone})" if done != "updated" else f"updated: {'; '.join(changed)}"
    return f"{wanted.name}: {what}; next {nxt}"
