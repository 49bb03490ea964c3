"""`goldenroute send`: one validation path that no line can break, durable acceptance, honest
summaries and exit codes, and the CLI finding a running `goldenroute dev` from any directory.

Parsing and discovery are tested in-process; `send` itself runs as the real CLI in a
subprocess against the session's PostgreSQL and Temporal dev server (no worker: what is
checked is what the ingress stores and forwards).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from starter.ingress import parse_lines
from starter.ingress.forwarder import ForwardResult
from starter.ingress.log import ACCEPTED, DUPLICATE, ERASED, REJECTED, Verdict
from starter.ingress.parse import MAX_EVENT_BYTES
from starter.ingress.send import Sent, summary
from worker.devstack import DevStack
from worker.discovery import DEV_STACK_FILE, RunningStack, find_running, publish, user_stack_file, withdraw
from worker.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def line(event_id: str, member_id: str = "m-1", **fields) -> bytes:
    event = {"type": "member_registered", "event_id": event_id, "member_id": member_id,
             "occurred_at": "2026-11-01T10:00:00+09:00", **fields}
    return json.dumps(event, ensure_ascii=False).encode()


def ndjson(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def kept_and_rejected(data: bytes | str) -> tuple[list[int], dict[int, str]]:
    parsed = parse_lines(data)
    return [n for n, _ in parsed.numbered], {r.line: "; ".join(r.problems) for r in parsed.rejected}


# --- parsing: a bad line is rejected with its number and reason; the others go on -----------------


def test_a_line_that_is_not_utf8_is_rejected_alone() -> None:
    broken = line("e2")[:30] + b"\xff\xfe" + line("e2")[30:]
    kept, rejected = kept_and_rejected(ndjson(line("e1"), broken, line("e3")))
    assert kept == [1, 3]
    assert rejected == {2: "(line): not UTF-8 at byte 31"}


def test_nul_is_rejected_with_its_field() -> None:
    escaped = line("e2", contact={"email": "taro\x00@example.jp"})  # JSON "\u0000"
    raw = line("e3").replace(b'"e3"', b'"e\x003"')  # a bare NUL byte inside a string
    kept, rejected = kept_and_rejected(ndjson(line("e1"), escaped, raw, line("e4")))
    assert kept == [1, 4]
    assert rejected[2].startswith("contact.email:")
    assert rejected[3].startswith("(event): Invalid JSON: control character")


@pytest.mark.parametrize("position", [0, 1])
def test_a_line_nested_too_deeply_is_rejected(position: int) -> None:
    lines = [line("e1"), line("e2")]
    lines.insert(position, b"[" * 100_000)
    kept, rejected = kept_and_rejected(ndjson(*lines))
    assert kept == [n for n in (1, 2, 3) if n != position + 1]
    assert list(rejected) == [position + 1]
    assert rejected[position + 1].startswith("(event): Invalid JSON: recursion limit exceeded")


def test_a_first_line_that_is_an_array_does_not_make_the_file_one_array() -> None:
    kept, rejected = kept_and_rejected(ndjson(b"[1, 2]", line("e2"), line("e3")))
    assert kept == [2, 3]
    assert rejected == {1: "(event): Input should be an object"}


def test_a_ten_megabyte_line_is_rejected_by_its_size() -> None:
    huge = b'{"type": "member_registered", "event_id": "' + b"x" * 10_000_000 + b'"}'
    kept, rejected = kept_and_rejected(ndjson(line("e1"), huge, line("e3")))
    assert kept == [1, 3]
    assert rejected == {2: f"(line): {len(huge):,} bytes, over the limit of {MAX_EVENT_BYTES:,} bytes for one event"}


def test_an_overlong_timezone_is_a_clear_rejection() -> None:
    kept, rejected = kept_and_rejected(ndjson(line("e1"), line("e2", timezone="UTC" * 100), line("e3")))
    assert kept == [1, 3]
    assert rejected[2].startswith("timezone: ") and "Errno" not in rejected[2]


def test_items_of_a_json_array_are_numbered_from_one() -> None:
    array = b"[" + b", ".join([line("e1"), b"1", b'"text"', line("e4", timezone="localtime")]) + b"]"
    parsed = parse_lines(array)
    assert [n for n, _ in parsed.numbered] == [1]
    assert [str(r) for r in parsed.rejected] == [
        "item 2: (event): must be a JSON object, not a number",
        "item 3: (event): must be a JSON object, not a string",
        "item 4: timezone: Value error, unknown IANA timezone 'localtime'",
    ]


def test_text_a_bom_crlf_and_one_pretty_printed_object() -> None:
    assert kept_and_rejected("\n".join([line("e1").decode(), "", line("e3").decode()])) == ([1, 3], {})
    assert kept_and_rejected(b"\xef\xbb\xbf" + line("e1") + b"\r\n" + line("e2") + b"\r\n") == ([1, 2], {})
    pretty = json.dumps(json.loads(line("e1")), indent=2)
    assert kept_and_rejected(pretty) == ([1], {})


_garbage = st.binary(max_size=200).filter(lambda b: b"\n" not in b and b.strip())


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(None), _garbage), min_size=2, max_size=12))
def test_no_line_stops_the_others(layout: list[bytes | None]) -> None:
    lines = [line(f"e{n}") if garbage is None else garbage for n, garbage in enumerate(layout, start=1)]
    lines = [line("first"), *lines, line("last")]
    kept, rejected = kept_and_rejected(ndjson(*lines))
    valid = [1, *(n for n, garbage in enumerate(layout, start=2) if garbage is None), len(lines)]
    assert kept == valid
    assert sorted(rejected) == [n for n in range(1, len(lines) + 1) if n not in valid]


# --- the summary: counted apart, singular and plural right ----------------------------------------


def _verdict(number: int, status: str, member_id: str = "m-1", problems: tuple[str, ...] = ()) -> Verdict:
    return Verdict(number, status, f"e{number}", member_id, problems)


def test_the_summary_counts_each_outcome_apart() -> None:
    parsed = parse_lines(ndjson(*(line(f"e{n}") for n in range(1, 5)), b"not json", line("e6")))
    sent = Sent(parsed, verdicts=[
        _verdict(1, ACCEPTED), _verdict(2, DUPLICATE), _verdict(3, DUPLICATE),
        _verdict(4, REJECTED, "m-2", (ERASED,)), _verdict(6, ACCEPTED, "m-3"),
    ], unreachable="Temporal at 127.0.0.1:1 is not reachable", pending=2)
    assert summary(sent) == [
        "accepted 2 events for 2 members; 2 duplicates (already accepted, not stored again); "
        "rejected 1 invalid line (line 5); refused 1 event of 1 erased member (line 4)",
        "Temporal at 127.0.0.1:1 is not reachable: 2 events stored in PostgreSQL and forwarded when the engine "
        "runs (`goldenroute dev` or `goldenroute serve`, or the next `send`)",
    ]
    assert sent.exit_status == 1
    one = Sent(parse_lines(line("e1")), verdicts=[_verdict(1, ACCEPTED)])
    assert summary(one) == ["accepted 1 event for 1 member"] and one.exit_status == 0
    assert summary(Sent(parse_lines(b""))) == ["accepted 0 events; the input holds no events"]
    many = Sent(parse_lines(ndjson(*[b"{"] * 8)))
    assert summary(many) == ["accepted 0 events; rejected 8 invalid lines (lines 1, 2, 3, 4, 5 and 3 more)"]
    completed = Sent(parse_lines(line("e1")), verdicts=[_verdict(1, ACCEPTED)],
                     forwarded=ForwardResult(members=1, refused=["m-1: e1: the member's workflow has completed"]))
    assert summary(completed) == ["accepted 1 event for 1 member", "1 event cannot be forwarded (listed above)"]
    assert completed.exit_status == 1


def test_the_summary_counts_what_the_running_engine_forwarded_meanwhile() -> None:
    """`send` while `goldenroute dev` runs: its forwarder takes some of the same members' events."""
    accepted = [_verdict(n, ACCEPTED, f"m-{n}") for n in range(1, 301)]
    racing = Sent(parse_lines(b""), verdicts=accepted, forwarded=ForwardResult(forwarded=184, members=199, busy=15,
                                                                               waiting=15),
                  elsewhere=101, pending=15, held=15)
    assert summary(racing)[1:] == [
        "forwarded 184 events to the member workflows here, 101 by another forwarder (the running engine's, or "
        "another send's) meanwhile",
        "not yet forwarded: 15 events: that forwarder is signalling them now",
    ]
    released = Sent(parse_lines(b""), verdicts=accepted, forwarded=ForwardResult(forwarded=184, members=199),
                    elsewhere=101, pending=15, held=3)
    assert summary(released)[2] == (
        "not yet forwarded: 15 events stored in PostgreSQL: that forwarder is signalling 3 of them now, the running "
        "engine's forwarder takes the rest up on its next round (or the next `send` does)")
    # Only a busy member seen (its events still leased by the other): no "when the engine runs".
    busy = Sent(parse_lines(b""), verdicts=accepted[:2], forwarded=ForwardResult(forwarded=1, members=2, busy=1,
                                                                                 waiting=1), pending=1, held=1)
    assert summary(busy)[1:] == [
        "forwarded 1 event to the member workflows",
        "not yet forwarded: 1 event: another forwarder (the running engine's, or another send's) is signalling it now"]
    # Alone, with Temporal failing half-way: the events wait for the engine.
    alone = Sent(parse_lines(b""), verdicts=accepted[:2], forwarded=ForwardResult(forwarded=1, members=2, waiting=1),
                 pending=1)
    assert summary(alone)[2] == ("not yet forwarded: 1 event stored in PostgreSQL and forwarded when the engine runs "
                                 "(`goldenroute dev` or `goldenroute serve`, or the next `send`)")


# --- discovery: explicit env, then the checkout, then the user's running stack --------------------


def _record(pid: int, **fields) -> RunningStack:
    defaults = {"temporal_address": "127.0.0.1:17233", "database_url": "postgresql://stack/db",
                "temporal_namespace": "default", "task_queue": "stack-queue", "home": "/somewhere/.goldenroute"}
    return RunningStack(**(defaults | fields), pids={"dev": pid})


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory outside any checkout, and a per-user state directory of this test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    directory = tmp_path / "elsewhere" / "deeper"
    directory.mkdir(parents=True)
    monkeypatch.chdir(directory)
    return directory


def test_the_user_file_is_found_from_any_directory_while_its_processes_live(elsewhere: Path) -> None:
    publish(user_stack_file(), _record(os.getpid()))
    found = Settings.from_env({}).with_dev_stack()
    assert (found.temporal_address, found.database_url) == ("127.0.0.1:17233", "postgresql://stack/db")
    assert (found.task_queue, found.home) == ("stack-queue", Path("/somewhere/.goldenroute"))
    # The environment still wins, field by field.
    mine = Settings.from_env({"TASK_QUEUE": "mine", "DATABASE_URL": "postgresql://mine/db"}).with_dev_stack()
    assert (mine.temporal_address, mine.database_url, mine.task_queue) == (
        "127.0.0.1:17233", "postgresql://mine/db", "mine")
    explicit = Settings.from_env({"TEMPORAL_ADDRESS": "t:1", "DATABASE_URL": "postgresql://d/b"})
    assert explicit.with_dev_stack() == explicit

    publish(user_stack_file(), _record(_dead_pid()))  # a `goldenroute dev` that was killed
    assert Settings.from_env({}).with_dev_stack().database_url is None


def test_the_checkout_of_the_current_directory_comes_first(elsewhere: Path) -> None:
    publish(user_stack_file(), _record(os.getpid(), database_url="postgresql://user-file/db"))
    checkout_file = elsewhere.parent / ".goldenroute" / DEV_STACK_FILE  # the cwd is a subdirectory
    publish(checkout_file, _record(os.getpid(), database_url="postgresql://checkout/db"))
    assert Settings.from_env({}).with_dev_stack().database_url == "postgresql://checkout/db"
    # An explicit GOLDENROUTE_HOME is that home only, not searched for in the parents.
    other_home = str(elsewhere / "other-home")
    assert Settings.from_env({"GOLDENROUTE_HOME": other_home}).with_dev_stack().database_url == \
        "postgresql://user-file/db"
    publish(checkout_file, _record(_dead_pid(), database_url="postgresql://checkout/db"))
    assert Settings.from_env({}).with_dev_stack().database_url == "postgresql://user-file/db"


def test_the_user_file_lives_under_xdg_state_home_or_home() -> None:
    assert user_stack_file({"XDG_STATE_HOME": "/x/state"}) == Path("/x/state/goldenroute/devstack.json")
    assert user_stack_file({"HOME": "/home/u"}) == Path("/home/u/.local/state/goldenroute/devstack.json")


async def test_dev_publishes_the_running_stack_per_user_and_withdraws_it(tmp_path: Path) -> None:
    user_file = tmp_path / "state" / "goldenroute" / "devstack.json"
    settings = Settings(home=tmp_path / "home", temporal_address="elsewhere:7233", database_url="postgresql://x/y")
    async with DevStack(settings, user_file=user_file):
        running = find_running(settings.home, environ={"XDG_STATE_HOME": str(tmp_path / "nowhere")})
        assert running == find_running(tmp_path / "not-a-home", environ={"XDG_STATE_HOME": str(tmp_path / "state")})
        assert running is not None and running.pids == {"dev": os.getpid()}
        assert (running.temporal_address, running.home) == ("elsewhere:7233", str((tmp_path / "home").resolve()))
        assert oct(user_file.stat().st_mode & 0o777) == "0o600"
    assert not user_file.exists() and not settings.dev_stack_file.exists()
    # A stack that stops never removes the record of another one published since.
    publish(user_file, _record(os.getpid() + 1))
    withdraw(user_file, os.getpid())
    assert user_file.exists()


# --- send, the real CLI against PostgreSQL and the Temporal dev server -----------------------------


def _cli_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {
        "TEMPORAL_ADDRESS", "DATABASE_URL", "TEMPORAL_NAMESPACE", "TASK_QUEUE", "GOLDENROUTE_HOME"}}
    env.update({"XDG_STATE_HOME": str(tmp_path / "state"), "GOLDENROUTE_HOME": str(tmp_path / "home"),
                "METRICS_PORT": "0"})
    env.update(variables)
    return env


async def goldenroute(env: dict[str, str], *args: str, stdin: bytes | None = None,
                      cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "goldenroute"), *args] if (BIN / "goldenroute").exists() else \
        [sys.executable, "-m", "starter.cli", *args]
    result = await asyncio.to_thread(subprocess.run, command, cwd=cwd, env=env, input=stdin,
                                     capture_output=True, timeout=120)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                       result.stderr.decode(errors="replace"))


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


@pytest.fixture
def engine_env(tmp_path: Path, database_url: str, dev_server_env, task_queue: str) -> dict[str, str]:
    return _cli_env(tmp_path, DATABASE_URL=database_url, TASK_QUEUE=task_queue,
                    TEMPORAL_ADDRESS=dev_server_env.client.service_client.config.target_host)


def _member_file(tmp_path: Path, member_id: str, *lines: bytes) -> Path:
    path = tmp_path / f"{member_id}-{uuid.uuid4().hex[:6]}.ndjson"
    path.write_bytes(ndjson(*lines))
    return path


async def _logged(pool: asyncpg.Pool, member_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT event_id, forwarded_at FROM member_events WHERE member_id = $1 ORDER BY seq",
                            member_id)


async def test_send_stores_forwards_and_says_what_became_of_each_line(
        tmp_path: Path, engine_env: dict[str, str], pool: asyncpg.Pool, member_id: str, dev_server_env) -> None:
    bad_timestamp = line(f"{member_id}-2", member_id).replace(b"+09:00", b"")
    path = _member_file(tmp_path, member_id, line(f"{member_id}-1", member_id), bad_timestamp,
                        line(f"{member_id}-3", member_id), line(f"{member_id}-4", member_id))
    first = await goldenroute(engine_env, "send", str(path))
    assert first.returncode == 1, _said(first)
    assert first.stdout.splitlines() == [
        "accepted 3 events for 1 member; rejected 1 invalid line (line 2)",
        "forwarded 3 events to the member workflows",
    ], _said(first)
    assert first.stderr.splitlines() == ["rejected line 2: occurred_at: Input should have timezone info"]
    logged = await _logged(pool, member_id)
    assert [r["event_id"] for r in logged] == [f"{member_id}-{n}" for n in (1, 3, 4)]
    assert all(r["forwarded_at"] is not None for r in logged)
    await dev_server_env.client.get_workflow_handle(f"member-{member_id}").describe()

    again = await goldenroute(engine_env, "send", "-", stdin=path.read_bytes())
    assert again.returncode == 1, _said(again)
    assert again.stdout.splitlines() == [
        "accepted 0 events; 3 duplicates (already accepted, not stored again); rejected 1 invalid line (line 2)",
    ], _said(again)
    assert len(await _logged(pool, member_id)) == 3


async def test_an_erased_members_events_are_refused_and_nothing_of_theirs_is_stored(
        tmp_path: Path, engine_env: dict[str, str], pool: asyncpg.Pool, member_id: str) -> None:
    erased = json.dumps({"type": "member_erased", "event_id": f"{member_id}-erased", "member_id": member_id,
                         "occurred_at": "2026-11-02T10:00:00+09:00"}).encode()
    registered = line(f"{member_id}-1", member_id)
    setup = await goldenroute(engine_env, "send", str(_member_file(tmp_path, member_id, registered, erased)))
    assert setup.returncode == 0, _said(setup)
    assert setup.stdout.splitlines()[0] == "accepted 2 events for 1 member", _said(setup)
    contacts_before = await pool.fetch("SELECT * FROM member_contacts WHERE member_id = $1", member_id)

    comeback = line(f"{member_id}-3", member_id, contact={"email": "taro@example.jp"})
    other = f"{member_id}-other"
    path = _member_file(tmp_path, member_id, comeback, line(f"{other}-1", other))
    result = await goldenroute(engine_env, "send", str(path))
    assert result.returncode == 1, _said(result)
    assert result.stdout.splitlines()[0] == "accepted 1 event for 1 member; refused 1 event of 1 erased member (line 1)"
    assert result.stderr.splitlines() == [f"refused line 1: {ERASED}"], _said(result)
    assert [r["event_id"] for r in await _logged(pool, member_id)] == [f"{member_id}-1", f"{member_id}-erased"]
    assert await pool.fetch("SELECT * FROM member_contacts WHERE member_id = $1", member_id) == contacts_before


async def test_events_are_stored_while_temporal_is_unreachable_and_forwarded_later(
        tmp_path: Path, engine_env: dict[str, str], pool: asyncpg.Pool, member_id: str) -> None:
    path = _member_file(tmp_path, member_id, line(f"{member_id}-1", member_id), line(f"{member_id}-2", member_id))
    down = await goldenroute(engine_env | {"TEMPORAL_ADDRESS": "127.0.0.1:1"}, "send", str(path))
    assert down.returncode == 0, _said(down)
    assert down.stdout.splitlines() == [
        "accepted 2 events for 1 member",
        "Temporal at 127.0.0.1:1 is not reachable: 2 events stored in PostgreSQL and forwarded when the engine "
        "runs (`goldenroute dev` or `goldenroute serve`, or the next `send`)",
    ], _said(down)
    assert [r["forwarded_at"] for r in await _logged(pool, member_id)] == [None, None]

    up = await goldenroute(engine_env, "send", str(path))
    assert up.returncode == 0, _said(up)
    assert up.stdout.splitlines() == [
        "accepted 0 events; 2 duplicates (already accepted, not stored again)",
        "forwarded 2 events to the member workflows",
    ], _said(up)
    assert all(r["forwarded_at"] is not None for r in await _logged(pool, member_id))


async def test_send_counts_the_events_another_forwarder_took_meanwhile(
        database_url: str, dev_server_env, task_queue: str, pool: asyncpg.Pool, member_id: str, monkeypatch) -> None:
    """Forwarded here + by the running engine meanwhile + still waiting = accepted, each said as it is."""
    from starter.ingress import send as send_module
    from starter.ingress.forwarder import Forwarder

    members = [f"{member_id}-{n}" for n in range(6)]
    engine = Forwarder(pool, dev_server_env.client, task_queue)
    holding = members[3]

    class Racing(Forwarder):
        """This send's forwarder, beaten to some members by the engine's."""

        async def forward_pending(self, member_ids=None, progress=None, track=False):
            await engine.forward_pending(members[:3])  # forwarded by the engine before this send got to them
            await pool.execute("UPDATE member_events SET lease_until = now() + interval '2 minutes' "
                               "WHERE member_id = $1", holding)  # the engine is signalling this one now
            return await super().forward_pending(member_ids, progress, track)

    monkeypatch.setattr(send_module, "Forwarder", Racing)
    settings = Settings(database_url=database_url, task_queue=task_queue,
                        temporal_address=dev_server_env.client.service_client.config.target_host)
    try:
        sent = await send_module.send(settings, ndjson(*(line(f"{m}-1", m) for m in members)))
    finally:
        await pool.execute("UPDATE member_events SET lease_until = NULL WHERE member_id = $1", holding)
    assert (sent.forwarded.forwarded, sent.elsewhere, sent.pending, sent.held) == (2, 3, 1, 1)
    assert sent.forwarded.busy == 1
    assert summary(sent) == [
        "accepted 6 events for 6 members",
        "forwarded 2 events to the member workflows here, 3 by another forwarder (the running engine's, or "
        "another send's) meanwhile",
        "not yet forwarded: 1 event: that forwarder is signalling it now",
    ]


async def test_send_and_report_find_the_running_stack_from_another_directory(
        tmp_path: Path, engine_env: dict[str, str], pool: asyncpg.Pool, member_id: str) -> None:
    """Only the per-user record names the stack: no DATABASE_URL, no TEMPORAL_ADDRESS, no checkout."""
    env = {k: v for k, v in engine_env.items() if k not in {"DATABASE_URL", "TEMPORAL_ADDRESS", "TASK_QUEUE",
                                                            "GOLDENROUTE_HOME"}}
    running = RunningStack(temporal_address=engine_env["TEMPORAL_ADDRESS"], database_url=engine_env["DATABASE_URL"],
                           temporal_namespace="default", task_queue=engine_env["TASK_QUEUE"],
                           home=str(tmp_path / "home"), pids={"dev": os.getpid()})
    publish(user_stack_file(env), running)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = _member_file(tmp_path, member_id, line(f"{member_id}-1", member_id))

    sent = await goldenroute(env, "send", str(path), cwd=elsewhere)
    assert sent.returncode == 0, _said(sent)
    assert sent.stdout.splitlines()[0] == "accepted 1 event for 1 member", _said(sent)
    assert len(await _logged(pool, member_id)) == 1
    report = await goldenroute(env, "report", "funnel", "--json", cwd=elsewhere)
    assert report.returncode == 0, _said(report)
    json.loads(report.stdout)

    publish(user_stack_file(env), running.model_copy(update={"pids": {"dev": _dead_pid()}}))
    stale = await goldenroute(env, "send", str(path), cwd=elsewhere)
    assert stale.returncode == 1, _said(stale)
    assert "DATABASE_URL is not set and no dev stack is running" in stale.stderr, _said(stale)
