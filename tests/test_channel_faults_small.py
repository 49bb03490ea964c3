"""``make faults``' channel run, small (bench/channel_faults.py): 30 first touches through the
LINE, SMTP and SMS stand-ins while they fail at random, ``goldenroute worker`` killed with
SIGKILL midway with sends in flight, then LINE down for a few seconds.

About 50 seconds: a send the kill interrupted is retried once its 30-second start-to-close
timeout has passed.
"""

from __future__ import annotations

import pytest

from activities import db
from bench.channel_faults import measure, report
from tests.activities.test_shop_versions import versions_url  # noqa: F401 (a fresh database: a fixture)
from workflows.events import Channel


@pytest.fixture
async def run(versions_url, dev_server_env, tmp_path):  # noqa: F811
    pool = await db.create_pool(versions_url, max_size=10)
    client = dev_server_env.client
    try:
        # Twice the storm's chances of each fault, so that 30 members meet some on each channel.
        yield await measure(pool, versions_url, client, client.service_client.config.target_host, tmp_path,
                            members=30, wave_size=10, outage=5.0, fault_scale=2.0, log=print)
    finally:
        await pool.close()


async def test_each_touch_reaches_its_vendor_at_most_once_none_is_lost_and_email_ignores_line_down(run):
    print(report(run))
    assert run.ok(), run.problems
    line, email, sms = (run.storm[c] for c in (Channel.LINE, Channel.EMAIL, Channel.SMS))
    assert (line.touches, email.touches, sms.touches) == (15, 9, 6)  # every member's first touch, routed
    # LINE deduplicates by X-Line-Retry-Key: one push per sent touch, whatever was retried; the
    # member whose id LINE refuses (bench.channel_storm.REFUSED_BY_LINE) has none, and it is failed.
    assert line.copies[1] == line.states["sent"] == 14 and line.copies[0] == line.states["failed"] == 1
    # SMTP and SMS cannot deduplicate: at most one message each; what may have gone is uncertain.
    for counts in (email, sms):
        assert set(counts.copies) <= {0, 1} and counts.lost == 0
        assert counts.states["sent"] + counts.states["failed"] + counts.states["uncertain"] == counts.touches
    # The faults and the kill did happen, so the checks above bite.
    assert sum(line.faults.values()) and sum(email.faults.values()) and sum(sms.faults.values())
    assert run.kill.in_flight, "the kill interrupted no send"
    for channel, ends in run.kill.ends.items():
        if channel is Channel.LINE:  # repeated after the kill: LINE answered 409 (or refused the id again)
            assert set(ends) <= {("sent", 1), ("failed", 0)} and ("sent", 1) in ends
        else:  # never repeated: uncertain, whether the vendor took it or not
            assert {state for state, _ in ends} == {"uncertain"} and {n for _, n in ends} <= {0, 1}
    # LINE down: every email of that wave went out before LINE came back …
    outage = run.outage
    assert outage.email and outage.email_within(run.outage_seconds) == len(outage.email)
    # … while LINE's touches waited for it: the outage was real.
    assert outage.line and max(outage.line) >= 2.0
