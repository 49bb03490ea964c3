"""``make faults``' broadcast run, small (bench/broadcast_faults.py): one run of a broadcast to
200 members registered through the ingress, ``goldenroute worker`` killed with SIGKILL
half-way and restarted. Every member is requested once and has one touch, decided by its own
policy (no consent: no_channel; at the cap: frequency_cap); one message at the SMTP stand-in
per sent touch; the erased get nothing; about a tenth held out.
"""

from __future__ import annotations

import pytest

from activities import db
from bench.broadcast_faults import measure, report
from tests.activities.test_shop_versions import versions_url  # noqa: F401 (a fresh database: a fixture)


@pytest.fixture
async def run(versions_url, dev_server_env, tmp_path):  # noqa: F811
    pool = await db.create_pool(versions_url, max_size=10)
    client = dev_server_env.client
    try:
        yield await measure(pool, versions_url, client, client.service_client.config.target_host, tmp_path,
                            members=200, rate=40.0, page_size=20, log=print)
    finally:
        await pool.close()


async def test_a_run_resumes_after_kill_9_and_each_member_gets_exactly_one_touch(run):
    print(report(run))
    assert run.ok(), run.problems
    assert (run.audience, run.requested, run.requested_events, run.touches) == (198, 198, 198, 198)
    assert run.erased_touched == 0 and set(run.copies) == {1}
    assert run.outcomes["no_consent"]["suppressed no_channel"] > 0
    assert run.outcomes["capped"]["suppressed frequency_cap"] > 0
    assert 0 < run.kill.reached < 198, "the kill did not land half-way"
