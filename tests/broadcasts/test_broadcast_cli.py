"""``goldenroute broadcast`` against a fresh database, the Temporal dev server (schedules need
it: the time-skipping test server has none) and the real worker: list, send --dry-run,
send, show, schedule / unschedule, cancel, and the errors a marketer can meet."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone

import pytest
from temporalio.client import WorkflowExecutionStatus

from starter.cli import main
from tests import datasets
from tests.broadcasts.conftest import BROADCASTS, write_shop
from tests.reports.test_segments import UNTIL, hand_made_members
from tests.workflows.helpers import eventually, running_worker
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_messages import BroadcastInput, schedule_id
from workflows.segments import Segment

ONLINE = 7  # hand_made_members' online members (the bc_online segment)


@pytest.fixture
async def cli(versions_pool, versions_url, dev_server_env, task_queue, monkeypatch, tmp_path):
    await datasets.load(versions_pool, hand_made_members(), UNTIL)
    monkeypatch.setenv("DATABASE_URL", versions_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server_env.client.service_client.config.target_host)
    monkeypatch.setenv("TASK_QUEUE", task_queue)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return dev_server_env.client


async def goldenroute(*argv: str) -> int:
    """The CLI as a user runs it (its own event loop, in a thread: the worker runs in this one)."""
    return await asyncio.to_thread(main, list(argv))


async def test_list_dry_run_send_and_show(cli, versions_pool, task_queue, shop_file, capsys):
    config = ["--config", str(shop_file)]
    assert await goldenroute("broadcast", "list", *config) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"BC 一斉配信: 3 broadcasts in file {shop_file}\n")
    assert re.search(r"bc_weekly +週1メルマガ \(テスト\) +bc_online +weekly_news +email +10% +0 10 \* \* MON", out)
    assert re.search(r"bc_once .+ bc_online +weekly_news +routed +10% \(policy\) +by hand", out)
    assert out.rstrip().endswith("no runs yet: `goldenroute broadcast send NAME`")

    assert await goldenroute("broadcast", "send", "bc_weekly", "--dry-run", "--sample", "3", *config) == 0
    out = capsys.readouterr().out
    assert out.startswith("bc_weekly (BC 一斉配信), dry run: nothing is sent\n")
    assert f"  audience    {ONLINE} members of bc_online now" in out
    assert "3 of 7 shown, by member id" in out
    assert await versions_pool.fetchval("SELECT count(*) FROM broadcast_runs") == 0

    async with running_worker(cli, versions_pool, task_queue):
        assert await goldenroute("broadcast", "send", "bc_weekly", "--run", "2026w14", *config) == 0
        out = capsys.readouterr().out
        assert out.startswith("bc_weekly (BC 一斉配信): run 2026w14 started (workflow broadcast-bc_weekly-2026w14)")
        done = await cli.get_workflow_handle_for(BroadcastWorkflow.run, "broadcast-bc_weekly-2026w14").result()
        assert (done.audience, done.requested) == (ONLINE, ONLINE)

        async def decided():
            assert await versions_pool.fetchval("SELECT count(*) FROM touches WHERE scenario = 'BC'") == ONLINE

        await eventually(decided)
    assert await goldenroute("broadcast", "send", "bc_weekly", "--run", "2026w14", *config) == 1
    assert "run 2026w14 of broadcast bc_weekly was already sent (workflow broadcast-bc_weekly-2026w14)" in \
        capsys.readouterr().err

    assert await goldenroute("broadcast", "show", "bc_weekly", *config) == 0
    out = capsys.readouterr().out
    outcomes = dict(await versions_pool.fetch("SELECT outcome, count(*) FROM touches WHERE scenario = 'BC'"
                                              " GROUP BY 1"))
    # The dataset's members have no stored addresses: the email ones end delivery_failed:NoRecipient.
    suppressed = dict(await versions_pool.fetch("SELECT reason, count(*) FROM touches WHERE outcome = 'suppressed'"
                                                " AND scenario = 'BC' GROUP BY 1"))
    assert out.startswith("bc_weekly (BC 一斉配信): 週1メルマガ (テスト)\n")
    assert "run 2026w14: finished" in out and f"  audience    {ONLINE} members of bc_online as of" in out
    assert f"  requested   {ONLINE}\n" in out and f"  sent        {outcomes.get('sent', 0)}\n" in out
    assert f"  holdout     {outcomes.get('holdout', 0)} (" in out and "  waiting     0" in out
    assert f"  suppressed  {sum(suppressed.values())}: " in out and f"no_channel {suppressed['no_channel']}" in out
    assert await goldenroute("broadcast", "list", *config) == 0
    assert re.search(rf"bc_weekly +2026w14 +finished +\S+ \S+ +{ONLINE} +{ONLINE} +{outcomes.get('sent', 0)} ",
                     capsys.readouterr().out)


async def test_unknown_names_are_named(cli, shop_file, capsys):
    config = ["--config", str(shop_file)]
    assert await goldenroute("broadcast", "send", "nope", "--dry-run", *config) == 1
    err = capsys.readouterr().err
    assert f"no broadcast 'nope' in {shop_file}; configured: bc_lost, bc_once, bc_weekly" in err
    assert await goldenroute("broadcast", "send", "bc_lost", "--dry-run", *config) == 1
    assert "broadcast bc_lost: its segment: no segment 'nobody_here'" in capsys.readouterr().err
    assert await goldenroute("broadcast", "show", "nope") == 1
    assert "no broadcast 'nope' in the configuration applied last (none is applied" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse's usage error
        await goldenroute("broadcast", "send", "bc_once", "--run", "no spaces", *config)
    assert refused.value.code == 2
    assert "a run id is letters, digits" in capsys.readouterr().err


async def test_schedule_creates_updates_and_deletes_a_schedule_in_the_shops_timezone(
        cli, versions_pool, task_queue, shop_file, tmp_path, capsys):
    config = ["--config", str(shop_file)]
    assert await goldenroute("broadcast", "schedule", *config) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["bc_lost: no schedule in its configuration (send it with `goldenroute broadcast send bc_lost`)",
                       "bc_once: no schedule in its configuration (send it with `goldenroute broadcast send bc_once`)"]
    assert re.fullmatch(r"bc_weekly: created: 0 10 \* \* MON \(Asia/Tokyo\); next \d{4}-\d\d-\d\d\(月\) 10:00, "
                        r"\d{4}-\d\d-\d\d\(月\) 10:00", out[2]), out
    described = await cli.get_schedule_handle(schedule_id("bc_weekly")).describe()
    assert described.schedule.spec.time_zone_name == "Asia/Tokyo"
    # show and list ask Temporal, not the configuration, whether it is scheduled
    assert await goldenroute("broadcast", "show", "bc_weekly", *config) == 0
    assert re.search(r"\n  schedule    0 10 \* \* MON \(Asia/Tokyo\), scheduled: next \d{4}-\d\d-\d\d\(月\) 10:00\n",
                     capsys.readouterr().out)
    assert await goldenroute("broadcast", "list", *config) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nbc_weekly .+ 0 10 \* \* MON +next \d{4}-\d\d-\d\d\(月\) 10:00\n", out), out
    assert re.search(r"\nbc_once .+ by hand +-\n", out) and "not scheduled in Temporal" not in out
    assert described.schedule.policy.overlap.name == "SKIP"
    assert await goldenroute("broadcast", "schedule", "bc_weekly", *config) == 0
    assert capsys.readouterr().out.startswith("bc_weekly: unchanged: 0 10 * * MON (Asia/Tokyo); next ")

    (tmp_path / "moved").mkdir()
    moved = write_shop(tmp_path / "moved", BROADCASTS.replace('schedule = "0 10 * * MON"', 'schedule = "30 9 * * TUE"')
                       .replace("holdout_percent = 10", "holdout_percent = 15"))
    assert await goldenroute("broadcast", "schedule", "bc_weekly", "--config", str(moved)) == 0
    assert re.fullmatch(r"bc_weekly: updated: cron 0 10 \* \* MON → 30 9 \* \* TUE; holdout_percent 10 → 15; "
                        r"next \d{4}-\d\d-\d\d\(火\) 09:30, \d{4}-\d\d-\d\d\(火\) 09:30\n", capsys.readouterr().out)
    assert await goldenroute("broadcast", "schedule", "bc_once", *config) == 1
    assert "broadcast bc_once has no schedule in file" in capsys.readouterr().err

    # A firing starts a run named after the time it fired, with its own workflow id.
    async with running_worker(cli, versions_pool, task_queue):
        await cli.get_schedule_handle(schedule_id("bc_weekly")).trigger()

        async def ran():
            row = await versions_pool.fetchrow("SELECT run, workflow_id, requested_at, status FROM broadcast_runs")
            assert row is not None and row["status"] == "finished"
            return row

        row = await eventually(ran, timeout=30)
    assert re.fullmatch(r"\d{8}T\d{4}Z", row["run"]) and row["workflow_id"].startswith("broadcast-bc_weekly-")
    assert row["run"] == row["requested_at"].strftime("%Y%m%dT%H%MZ")

    assert await goldenroute("broadcast", "unschedule", "bc_weekly") == 0
    assert capsys.readouterr().out.startswith("bc_weekly: schedule deleted")
    assert await goldenroute("broadcast", "show", "bc_weekly", *config) == 0
    assert ("\n  schedule    0 10 * * MON (Asia/Tokyo), not scheduled — run goldenroute broadcast schedule bc_weekly\n"
            in capsys.readouterr().out)
    assert await goldenroute("broadcast", "list", *config) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nbc_weekly .+ 0 10 \* \* MON +no\n", out), out
    assert "not scheduled in Temporal: bc_weekly — `goldenroute broadcast schedule` creates its schedule" in out
    assert await goldenroute("broadcast", "unschedule", "bc_weekly") == 1
    assert "no schedule for broadcast bc_weekly" in capsys.readouterr().err


async def test_list_and_show_without_temporal_and_runs_newest_first(
        cli, versions_pool, shop_file, monkeypatch, capsys):
    """Runs of several broadcasts, newest first whatever their names; Temporal away: a note, no crash."""
    for broadcast, run, day in (("bc_weekly", "w-old", 20), ("bc_once", "o-1", 25), ("bc_weekly", "w-new", 30)):
        started = datetime(2026, 11, day, 1, tzinfo=timezone.utc)
        await versions_pool.execute(
            "INSERT INTO broadcast_runs (broadcast, run, workflow_id, definition, requested_at, as_of, audience, "
            "status, started_at, finished_at) VALUES ($1, $2, $3, '{}', $4, $4, 0, "
            "'finished', $4, $4)", broadcast, run, f"broadcast-{broadcast}-{run}", started)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    config = ["--config", str(shop_file)]
    assert await goldenroute("broadcast", "list", *config) == 0
    out = capsys.readouterr().out
    runs = out[out.index("runs (newest first):"):].splitlines()[3:]
    assert [line.split()[:2] for line in runs] == [["bc_weekly", "w-new"], ["bc_once", "o-1"], ["bc_weekly", "w-old"]]
    assert re.search(r"\nbc_weekly .+ 0 10 \* \* MON +\?\n", out), out
    assert "\nscheduled: not known — Temporal at 127.0.0.1:1 is not reachable\n" in out

    assert await goldenroute("broadcast", "show", "bc_weekly", *config) == 0
    out = capsys.readouterr().out
    assert ("\n  schedule    0 10 * * MON (Asia/Tokyo), whether it is scheduled is unknown: Temporal at 127.0.0.1:1 "
            "is not reachable\n") in out
    assert out.index("run w-new: finished") < out.index("run w-old: finished")


async def test_cancel_stops_a_run_between_pages(cli, versions_pool, task_queue, capsys):
    slow = BroadcastInput(name="bc_slow", run="r1", segment_name="bc_online",
                          segment=Segment(description="テスト", sales_channel="online"), template="weekly_news",
                          channel="email", rate_per_second=0.01, page_size=1)
    async with running_worker(cli, versions_pool, task_queue):
        handle = await cli.start_workflow(BroadcastWorkflow.run, slow, id="broadcast-bc_slow-r1", task_queue=task_queue)

        async def first_page():
            assert (await handle.query(BroadcastWorkflow.progress)).reached == 1

        await eventually(first_page)
        assert await goldenroute("broadcast", "cancel", "bc_slow", "--run", "r1") == 0
        assert "bc_slow run r1: cancel requested" in capsys.readouterr().out
        await eventually(lambda: _status(handle, WorkflowExecutionStatus.CANCELED))
    assert await versions_pool.fetchval("SELECT status FROM broadcast_runs WHERE broadcast = 'bc_slow'") == "cancelled"
    assert await versions_pool.fetchval("SELECT count(*) FROM member_events WHERE type = 'broadcast_requested'") == 1
    assert await goldenroute("broadcast", "cancel", "bc_slow", "--run", "r1") == 1
    assert "run r1 of broadcast bc_slow is cancelled: nothing to cancel" in capsys.readouterr().err


async def _status(handle, wanted) -> None:
    assert (await handle.describe()).status == wanted


def test_the_schedule_line_says_what_temporal_has_against_the_configuration():
    from starter.broadcasts.runs import Configured
    from starter.broadcasts.schedules import Scheduled
    from starter.broadcasts.text import Schedules, schedule_line
    from workflows.shop import Broadcast

    weekly = Configured("nl", Broadcast(description="d", segment="s", schedule="0 10 * * MON"), "file x",
                        "Asia/Tokyo", 10)
    by_hand = Configured("nl", Broadcast(description="d", segment="s"), "file x", "Asia/Tokyo", 10)
    monday = datetime(2026, 12, 7, 1, tzinfo=timezone.utc)

    def line(found, state, paused=False, cron="0 10 * * MON"):
        known = Schedules({"nl": state and Scheduled(cron, "Asia/Tokyo", None, paused, (monday,))})
        return schedule_line("nl", found, known, "Asia/Tokyo")

    assert line(weekly, True) == "0 10 * * MON (Asia/Tokyo), scheduled: next 2026-12-07(月) 10:00"
    assert line(weekly, True, paused=True) == "0 10 * * MON (Asia/Tokyo), scheduled: paused"
    assert line(weekly, True, cron="0 9 * * TUE") == (
        "0 10 * * MON (Asia/Tokyo), but scheduled as 0 9 * * TUE (Asia/Tokyo): next 2026-12-07(月) 10:00 — run "
        "goldenroute broadcast schedule nl to take up the configuration")
    assert line(weekly, None) == "0 10 * * MON (Asia/Tokyo), not scheduled — run goldenroute broadcast schedule nl"
    assert line(by_hand, None) == "none: sent by hand"
    assert line(by_hand, True) == (
        "none in the configuration, yet scheduled in Temporal (0 10 * * MON (Asia/Tokyo)): next 2026-12-07(月) "
        "10:00 — goldenroute broadcast unschedule nl stops it")
    assert schedule_line("nl", weekly, Schedules(unreachable="Temporal at x is not reachable"), "Asia/Tokyo") == (
        "0 10 * * MON (Asia/Tokyo), whether it is scheduled is unknown: Temporal at x is not reachable")
