"""The README's walkthrough, literally: `goldenroute dev`, then its shell block, and a touch is sent.

The commands are read from README.md (the ```sh block that sends the examples), not
copied here, so a change to the walkthrough is a change to this test. They run in
order from the checkout, as a newcomer types them, against `goldenroute dev` started
as a subprocess in its own home and on its own ports (the fixture of
test_dev_stack.py); then the outbox must show a `sent` touch of a member whose file
went with `--now` within 90 seconds.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from pathlib import Path

import asyncpg
import pytest

from starter.ingress import parse_lines
from tests.e2e.test_dev_stack import PROJECT, Stack, describe, stack  # noqa: F401  (stack: the fixture)

pytestmark = pytest.mark.e2e

README = PROJECT / "README.md"
SENT_WITHIN = 90.0
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def walkthrough() -> list[list[str]]:
    """The README's shell block that sends the examples: one argv per line, comments dropped."""
    blocks = [b for b in _SH_BLOCK.findall(README.read_text(encoding="utf-8")) if "goldenroute send examples/" in b]
    assert blocks, "README.md has no ```sh block with `goldenroute send examples/…`"
    return [argv for line in blocks[0].splitlines() if (argv := shlex.split(line, comments=True))]


def sent_now(commands: list[list[str]]) -> list[Path]:
    return [PROJECT / argv[2] for argv in commands if argv[:2] == ["goldenroute", "send"] and "--now" in argv]


def test_the_walkthrough_sends_examples_with_now() -> None:
    commands = walkthrough()
    assert all(argv[0] == "goldenroute" for argv in commands), commands
    files = sent_now(commands)
    assert files, f"no `goldenroute send … --now` in the README's walkthrough: {commands}"
    assert all(path.exists() for path in files), files


async def _sent_touches(database_url: str, members: set[str]) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT member_id, scenario, step, channel, outcome, reason FROM touches"
            " WHERE outcome = 'sent' AND member_id = ANY($1::text[]) ORDER BY member_id, scenario, step",
            sorted(members))
    finally:
        await connection.close()


async def test_following_the_walkthrough_a_touch_is_sent_within_90_seconds(stack: Stack) -> None:  # noqa: F811
    started = time.monotonic()
    commands = walkthrough()
    for argv in commands:
        result = await asyncio.to_thread(stack.goldenroute, *argv[1:])
        assert result.returncode == 0, f"$ {shlex.join(argv)}\n{describe(result)}"
        if "--now" in argv:
            assert result.stdout.startswith("shifted "), f"$ {shlex.join(argv)}\n{describe(result)}"

    members = {e.member_id for path in sent_now(commands) for e in parse_lines(path.read_bytes()).events}
    deadline = started + SENT_WITHIN
    while not (sent := await _sent_touches(stack.database_url, members)) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert sent, (f"no touch sent to {sorted(members)} within {SENT_WITHIN:.0f}s of the first command; "
                  f"the dev stack's log:\n{stack.stderr_tail()}")
