"""Where a running ``goldenroute dev`` says it is, so the CLI finds it from any directory.

``goldenroute dev`` writes one record of the running stack (addresses, namespace,
task queue, its ``GOLDENROUTE_HOME`` and the PIDs of its processes) twice: into
``GOLDENROUTE_HOME/dev-stack.json`` of the checkout, and into a per-user file
(``$XDG_STATE_HOME/goldenroute/devstack.json``, by default under
``~/.local/state``); it removes both when it stops. A command looks first in the
checkout it runs in (the current directory or a parent holding the home), then in
the per-user file. A record whose processes are gone (a ``dev`` that was killed)
is ignored, so a stale file never points a command at nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

DEV_STACK_FILE = "dev-stack.json"
USER_STACK_FILE = "devstack.json"


class RunningStack(BaseModel):
    """What a running ``goldenroute dev`` publishes about itself."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    temporal_address: str | None = None
    database_url: str | None = None
    temporal_namespace: str | None = None
    task_queue: str | None = None
    ui_url: str | None = None
    home: str | None = None  # the stack's GOLDENROUTE_HOME, absolute
    pids: dict[str, int] = {}  # dev (the process that wrote this), temporal, postgres: the ones it started

    def is_running(self) -> bool:
        """Every process it names is alive (a record without PIDs is taken at its word)."""
        return all(_alive(pid) for pid in self.pids.values())


def user_stack_file(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    state = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "goldenroute" / USER_STACK_FILE


def find_running(home: Path, *, search_parents: bool = True,
                 environ: Mapping[str, str] | None = None) -> RunningStack | None:
    """The running stack of this checkout (``home`` here or, if relative, in a parent), else the user's."""
    for candidate in _checkout_files(home, search_parents):
        running = read(candidate)
        if running is not None:
            return running
    return read(user_stack_file(environ))


def read(path: Path) -> RunningStack | None:
    """The record at ``path`` if its stack is running; None if absent, unreadable or stale."""
    try:
        running = RunningStack.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None
    return running if running.is_running() else None


def publish(path: Path, running: RunningStack) -> None:
    """Write the record atomically (a reader never sees half of it), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(running.model_dump_json(indent=2))
    partial.chmod(0o600)
    os.replace(partial, path)


def withdraw(path: Path, pid: int | None = None) -> None:
    """Remove the record, unless another ``dev`` (not ``pid``) has published its own there since."""
    if pid is not None:
        try:
            current = RunningStack.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            current = None
        if current is not None and current.pids.get("dev") not in (None, pid):
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _checkout_files(home: Path, search_parents: bool) -> list[Path]:
    home = home.expanduser()
    if home.is_absolute() or not search_parents:
        return [home / DEV_STACK_FILE]
    here = Path.cwd()
    return [directory / home / DEV_STACK_FILE for directory in (here, *here.parents)]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
