"""A real worker on the Temporal dev server reads the configuration versions from PostgreSQL,
refreshes them while it runs, and its member workflows decide under the version in force."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from activities import db
from activities.shop_versions import apply
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import accept
from tests.activities.test_shop_versions import changed, versions_url  # noqa: F401 (a fixture)
from tests.factories import order, registered
from worker.main import build_worker, shop_configuration
from worker.settings import Settings
from workflows import versions
from tests.workflows.helpers import eventually
from workflows.member import MemberWorkflow, workflow_id




async def test_members_take_up_a_version_applied_while_the_worker_runs(
        versions_url, dev_server_env, task_queue, member_id):  # noqa: F811
    client = dev_server_env.client
    settings = Settings(task_queue=task_queue, max_cached_workflows=10, config_lead_seconds=4,
                        config_refresh_seconds=1)
    pool = await db.create_pool(versions_url, max_size=5)
    handle = client.get_workflow_handle_for(MemberWorkflow.run, workflow_id(member_id))

    async def send(*events) -> None:
        await accept(pool, list(enumerate(events, start=1)))
        await Forwarder(pool, client, task_queue).forward_pending([member_id])

    async def decided_under(version: int) -> None:
        view = await handle.query(MemberWorkflow.state)
        assert view.config_version == version, view.config_version

    try:
        async with shop_configuration(pool, settings) as config, \
                build_worker(client, pool, settings, shops=config.shops):
            assert versions.book_for(task_queue) is config.book
            now = datetime.now(timezone.utc)
            await send(registered(member_id, now), order(member_id, now, "o1"))
            await eventually(lambda: decided_under(0), timeout=20)  # nothing applied: the SPEC's defaults

            v1, _ = await apply(pool, changed(), timedelta(seconds=3))

            async def read_and_in_force() -> None:
                assert config.shops.get(1) is not None and config.book.known_until > v1.effective_at
                assert datetime.now(timezone.utc) > v1.effective_at
            await eventually(read_and_in_force, timeout=20)
            await send(order(member_id, datetime.now(timezone.utc), "o2"))
            await eventually(lambda: decided_under(1), timeout=20)
        assert versions.book_for(task_queue) is not config.book  # uninstalled with the worker
    finally:
        await handle.terminate("test finished")
        await pool.close()


async def test_a_worker_that_cannot_read_the_versions_does_not_start(versions_url, task_queue):  # noqa: F811
    pool = await db.create_pool(versions_url, max_size=1)
    await pool.close()
    with pytest.raises(RuntimeError, match="cannot read the shop's configuration versions"):
        async with shop_configuration(pool, Settings(task_queue=task_queue)):
            pass
    assert versions.book_for(task_queue).known_until is None  # nothing installed
