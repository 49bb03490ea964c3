"""Record member workflow histories for the replay tests.

Run after a change that is *meant* to keep running workflows compatible (behind
``workflow.patched``), to add histories of the new behaviour under a new tag; keep
the old tags — they are the members already running. Never re-record a tag to make
a failing replay pass:

    .venv/bin/python -m tests.replay.record_histories v2-event-log
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import db
from tests.conftest import binary
from tests.factories import JST, days, event, order, registered, sample, shipped
from tests.workflows.helpers import running_worker, send
from worker.client import register_search_attributes
from worker.devstack import start_embedded_postgres

HISTORIES = Path(__file__).parent / "histories"


def journeys(t0):
    """name → (events at their offsets in days, days to run)."""
    sub = {"subscription_id": "sub-1"}
    return {
        "sample_converts": ([
            (0, registered("replay-sample", t0)),
            (0, sample("replay-sample", t0, "s1", days_supply=7)),
            (1, shipped("replay-sample", t0 + days(1), "s1")),
            (6, order("replay-sample", t0 + days(6), "o1")),
        ], 40),
        "normal_buyer_goes_dormant": ([
            (0, registered("replay-normal", t0)),
            (0, order("replay-normal", t0, "o1")),
            (2, shipped("replay-normal", t0 + days(2), "o1")),
            (31, order("replay-normal", t0 + days(31), "o2")),
        ], 150),
        "subscriber_pauses": ([
            (0, registered("replay-sub", t0)),
            (0, order("replay-sub", t0, "o1", subscription_id="sub-1")),
            (0, event("subscription_started", "replay-sub", t0, sku="KOSO-30", interval_days=30, **sub)),
            (20, event("subscription_paused", "replay-sub", t0 + days(20), **sub)),
        ], 90),
        "churn_signal_then_erasure": ([
            (0, registered("replay-churn", t0)),
            (0, order("replay-churn", t0, "o1", subscription_id="sub-1")),
            (0, event("subscription_started", "replay-churn", t0, sku="KOSO-30", interval_days=30, **sub)),
            (10, event("churn_signal", "replay-churn", t0 + days(10), signal="cancel_page_viewed")),
            (12, event("subscription_interval_changed", "replay-churn", t0 + days(12), interval_days=60, **sub)),
            (20, event("member_erased", "replay-churn", t0 + days(20))),
        ], 25),
    }


async def record(tag: str) -> None:
    folder = HISTORIES / tag
    if folder.exists():
        raise SystemExit(f"{folder} exists: histories of a released version are never re-recorded")
    folder.mkdir(parents=True)
    pgdata = Path(tempfile.mkdtemp()) / "pg"
    pg = start_embedded_postgres(pgdata)
    pool = await db.create_pool(pg.database_url)
    await db.migrate(pool)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=binary("temporal-test-server"))
    await register_search_attributes(env.client, env.client.namespace)
    try:
        async with running_worker(env.client, pool, "replay"):
            t0 = (await env.get_current_time()).astimezone(JST)
            for name, (timed_events, run_days) in journeys(t0).items():
                elapsed = 0.0
                handle = None
                for offset, member_event in timed_events:
                    if offset > elapsed:
                        await env.sleep(days(offset - elapsed))
                        elapsed = offset
                    handle = await send(env.client, "replay", member_event)
                await env.sleep(days(run_days - elapsed))
                history = await handle.fetch_history()
                (folder / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")
    finally:
        await env.shutdown()
        await pool.close()
        pg.stop()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.replay.record_histories TAG")
    asyncio.run(record(sys.argv[1]))
