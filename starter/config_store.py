"""``goldenroute config apply`` and ``config versions``: the shop's configuration versions.

``apply FILE`` checks the file and its templates as ``config check`` does and, when they differ from the
newest version, stores them as the next version, effective ``CONFIG_LEAD_SECONDS``
after now (``activities.shop_versions``); it says when, and what changed, key by
key. ``versions`` lists every version and which one is in force. ``goldenroute dev``
applies ``GOLDENROUTE_SHOP_CONFIG`` the same way when it starts (``apply_at_start``).

The CLI and the workers must read the same ``CONFIG_LEAD_SECONDS``: a worker trusts
that no version it has not read yet takes effect within half of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ValidationError

from activities.render import check_templates
from activities.shop_versions import ShopVersion, apply, fetch
from starter.table import table
from worker.settings import Settings
from worker.shop_config import LoadedShop, ShopConfigError, load_shop_config
from workflows.shop import ShopConfig

log = structlog.get_logger(__name__)

_UNSET = object()


def add_store_commands(actions: argparse._SubParsersAction) -> None:
    """``apply`` and ``versions`` under ``goldenroute config``."""
    apply_ = actions.add_parser(
        "apply", help="store a shop file as a new configuration version: running members take it up "
                      "CONFIG_LEAD_SECONDS (60 s) from now, each at its next decision")
    apply_.add_argument("file", metavar="FILE", help="the shop configuration (see examples/shop.toml)")
    apply_.add_argument("--note", metavar="TEXT", help="why: kept with the version (config versions shows it)")
    apply_.set_defaults(command=_apply)
    versions = actions.add_parser("versions", help="every configuration version: when applied, when in force")
    versions.set_defaults(command=_versions)


async def _apply(settings: Settings, args: argparse.Namespace) -> int:
    from starter.cli import emit
    from worker.main import database

    try:
        loaded = checked(args.file)
    except ShopConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    settings = settings.with_dev_stack()
    async with database(settings) as pool:
        version, created = await apply(pool, loaded, timedelta(seconds=settings.config_lead_seconds), args.note)
        previous = await fetch(pool, version.number - 1) if created else None
    emit(describe(version, created, previous))
    return 0


def checked(path) -> LoadedShop:
    """The file as ``config check`` passes it: valid, and every template it enables renders
    (a touch whose message cannot be rendered is never sent, so such a file is not applied)."""
    loaded = load_shop_config(path)
    problems = check_templates(loaded.config, loaded.templates)
    if problems:
        raise ShopConfigError(problems)
    return loaded


def describe(version: ShopVersion, created: bool, previous: ShopVersion | None) -> str:
    """``version 3 takes effect at 2026-12-02 10:41:00+09:00 (in 60 s); changed: …``; ``previous``
    is the version this one follows (number − 1: what it changes)."""
    if not created:
        return f"unchanged: version {version.number} is already this configuration"
    when = shop_clock(version, version.effective_at)
    wait = round((version.effective_at - version.applied_at).total_seconds()) if version.applied_at else None
    head = f"version {version.number} takes effect at {when}" + (f" (in {wait} s)" if wait is not None else "")
    if previous is None:
        return f"{head}; the first configuration applied (before it, the built-in example shop)"
    changed = changes(previous, version)
    return f"{head}; changed: {', '.join(changed)}" if changed else f"{head}; changed: nothing but the file's text"


def shop_clock(version: ShopVersion, moment) -> str:
    return moment.astimezone(ZoneInfo(version.config.shop.timezone)).isoformat(sep=" ", timespec="seconds")


def changes(before: ShopVersion, after: ShopVersion) -> list[str]:
    """Every key whose value differs, dotted (``policy.send_time 10:00 → 11:00``), then the
    templates added, removed or changed. A key one side leaves out shows the default it
    means where the model has one (a scenario not written out is switched on); an entry
    with none (a product) is one line: ``catalogue.NEW-1 added``."""
    lines = _differences(before.config.model_dump(mode="json"), after.config.model_dump(mode="json"), ())
    for name in sorted(before.templates.keys() | after.templates.keys()):
        if name not in after.templates:
            lines.append(f"templates {name} removed")
        elif name not in before.templates:
            lines.append(f"templates {name} added")
        elif before.templates[name] != after.templates[name]:
            lines.append(f"templates {name} changed")
    return lines


def _differences(old: Any, new: Any, path: tuple[str, ...]) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in [*old, *(k for k in new if k not in old)]:
            here = (*path, str(key))
            was = old[key] if key in old else _default(ShopConfig, here)
            now = new[key] if key in new else _default(ShopConfig, here)
            if was is _UNSET and isinstance(now, dict):
                lines.append(f"{'.'.join(here)} added")
            elif now is _UNSET and isinstance(was, dict):
                lines.append(f"{'.'.join(here)} removed")
            else:
                lines += _differences(was, now, here)
        return lines
    return [] if old == new else [f"{'.'.join(path)} {_shown(old)} → {_shown(new)}"]


def _default(model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """What an entry a mapping leaves out means: its model built with no arguments
    (``scenarios.S06`` → a scenario switched on), or unset where it has no default (a product)."""
    node: Any = model
    for part in path:
        if _model_of(node) is not None:
            field = _model_of(node).model_fields.get(part)
            if field is None:
                return _UNSET
            node = field.annotation
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        else:
            return _UNSET
    entry = _model_of(node)
    if entry is None:
        return _UNSET
    try:
        return entry().model_dump(mode="json")
    except ValidationError:
        return _UNSET


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Union:
        return next(filter(None, (_model_of(a) for a in get_args(annotation))), None)
    return None


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_LIST = """
SELECT version, applied_at, effective_at, digest, note, body->'shop'->>'timezone' AS timezone,
       version = (SELECT version FROM config_versions WHERE effective_at <= now()
                  ORDER BY effective_at DESC, version DESC LIMIT 1) AS in_force,
       effective_at > now() AS pending
FROM config_versions ORDER BY version
"""


async def _versions(settings: Settings, args: argparse.Namespace) -> int:
    from starter.cli import emit
    from worker.main import database

    async with database(settings.with_dev_stack()) as pool:
        rows = await pool.fetch(_LIST)
    if not rows:
        emit("no configuration applied yet: the built-in example shop (version 0) is in force")
        return 0
    zone = ZoneInfo(rows[-1]["timezone"] or "Asia/Tokyo")

    def at(moment) -> str:
        return moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")

    body = [(str(r["version"]), at(r["applied_at"]), at(r["effective_at"]), r["digest"][:12],
             "in force" if r["in_force"] else "pending" if r["pending"] else "", r["note"] or "")
            for r in rows]
    emit("\n".join(table(("version", "applied_at", "effective_at", "digest", "state", "note"), body,
                         right=(True,))))
    return 0


async def apply_at_start(settings: Settings) -> str:
    """``goldenroute dev``: apply ``GOLDENROUTE_SHOP_CONFIG`` if it names a file (a new version only
    when the file or its templates changed), and say which configuration the stack runs.

    Only the named file: a checkout's examples/shop.toml is not applied by itself, since
    version 0 already is that example shop, and a home whose versions came from a shop's own
    file must not get an example's on top of them because dev was started in a checkout."""
    from activities.shop_versions import load
    from worker.main import database

    loaded = None
    if settings.shop_config is not None:
        try:
            loaded = checked(settings.shop_config)
        except ShopConfigError as error:
            raise RuntimeError("GOLDENROUTE_SHOP_CONFIG cannot be applied:\n" + "\n".join(error.problems)) from None
    async with database(settings) as pool:
        if loaded is None:
            found, _ = await load(pool)
            return (f"version {found[-1].number} (`goldenroute config versions`)" if found else
                    "the built-in example shop (version 0); GOLDENROUTE_SHOP_CONFIG=FILE applies your own")
        version, created = await apply(pool, loaded, timedelta(seconds=settings.config_lead_seconds),
                                       f"goldenroute dev: {settings.shop_config}")
        previous = await fetch(pool, version.number - 1) if created else None
    log.info("config.applied" if created else "config.unchanged", version=version.number, path=str(loaded.path),
             effective_at=version.effective_at.isoformat(), digest=version.digest[:12])
    return f"{settings.shop_config}: {describe(version, created, previous)}"
