"""Shared fixtures: real PostgreSQL (embedded, or DATABASE_URL) and real Temporal servers."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest
from worker.converter import DATA_CONVERTER
from temporalio.testing import WorkflowEnvironment

from activities import db
from worker.client import register_search_attributes
from workflows import search

BIN = Path(sys.executable).parent


def binary(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail(f"{name} not found: install the project with its test extra (make test does)")
    return found


@pytest.fixture(scope="session")
def database_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PostgreSQL server: DATABASE_URL if set, else an embedded one for this session."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from worker.devstack import start_embedded_postgres

    server = start_embedded_postgres(tmp_path_factory.mktemp("pg") / "data")
    yield server.database_url
    server.stop()


async def new_database(server_url: str, prefix: str = "goldenroute_test") -> str:
    """A fresh database on ``server_url``, migrated; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(server_url, name)
    pool = await db.create_pool(url)
    await db.migrate(pool)
    await pool.close()
    return url


@pytest.fixture(scope="session")
async def database_url(database_server_url: str) -> str:  # noqa: D401
    """A fresh database for this test session, migrated."""
    return await new_database(database_server_url)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url)
    yield pool
    await pool.close()


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=binary("temporal-test-server"),
    )
    await register_search_attributes(env.client, env.client.namespace)
    yield env
    await env.shutdown()


# The dev server suggests continue-as-new after this many history events, so tests reach it.
SUGGEST_CONTINUE_AS_NEW_AFTER = 60


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=binary("temporal"),
        search_attributes=list(search.ALL),
        dev_server_extra_args=[
            "--dynamic-config-value", f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}",
            "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    yield env
    await env.shutdown()


@pytest.fixture
def member_id() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"
