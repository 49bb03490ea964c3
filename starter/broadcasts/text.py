"""What ``goldenroute broadcast`` prints: plain text for a marketer, times in the shop's
timezone with a Japanese weekday, counts with thousands separators."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starter.broadcasts.runs import Configured, RunFigures
from starter.reports.period import DEFAULT_TIMEZONE
from starter.segments.cli import criteria_text, describe
from starter.segments.store import Found
from starter.table import local_date, scenario_label, table
from workflows.broadcast_messages import BroadcastProgress
from workflows.broadcasts import BROADCAST

__all__ = ["DEFAULT_TIMEZONE", "details", "dry_run", "listing", "live_progress", "scheduled", "started"]

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


def listing(every: list[Configured], done: list[RunFigures], zone: str) -> list[str]:
    if every:
        head = [f"{LABEL}: {len(every)} broadcasts in {every[0].origin}"]
        rows = [[f.name, f.broadcast.description, f.broadcast.segment, f.broadcast.template_name(f.name),
                 f.broadcast.channel.value if f.broadcast.channel else "routed", holdout_text(f),
                 f.broadcast.schedule or "by hand"] for f in every]
        head += table(["name", "description", "segment", "template", "channel", "holdout",
                       f"schedule ({zone})"], rows)
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
            zone: str) -> list[str]:
    if found is None:
        lines = [f"{name} ({LABEL}): no longer configured; its runs:"]
    else:
        b = found.broadcast
        lines = [
            f"{name} ({LABEL}): {b.description}",
            f"  defined in  {found.origin}",
            f"  segment     {b.segment}",
            f"  template    {b.template_name(name)}, {b.channel.value if b.channel else 'routed'}",
            f"  holdout     {holdout_text(found)}",
            f"  schedule    {b.schedule + f' ({found.timezone})' if b.schedule else 'none: sent by hand'}",
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
