"""``goldenroute preview EVENTS... [--days N] [--json] [--config FILE | --compare OLD NEW]``.

Needs no dev stack: its own time-skipping test server, dry channels, no PostgreSQL.
Every input is checked before the server starts: the event files (a rejected line
exits 1, as ``send`` does) and the configuration files (a problem exits 2 with the
loader's ``FILE:LINE: key: problem``). One server runs every member, and both sides
of a comparison, one run after another.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from starter.preview import compare as comparison
from starter.preview.inputs import PreviewError, load_members
from starter.preview.render import members_json, report_problems, to_json, to_table
from starter.preview.run import Previewer
from worker.shop_config import ShopConfigError, load_shop_config
from workflows.rules import Rules

# A preview is a shop's file applied alone: its one version, whatever number it gets when applied.
PREVIEW_VERSION = 1


def shop_rules(path: str) -> Rules:
    """The rules a configuration file decides with (``ShopConfigError`` names file, line and key)."""
    return load_shop_config(path).config.rules(PREVIEW_VERSION)


async def run_preview(args: argparse.Namespace) -> int:
    from starter.cli import emit

    try:
        members = load_members(args.files)
    except PreviewError as error:
        for problem in error.problems:
            print(f"rejected {problem}", file=sys.stderr)
        return 1
    configs = args.compare or ([args.config] if args.config else [])
    try:
        rules = [shop_rules(path) for path in configs]
    except ShopConfigError as error:
        for problem in error.problems:
            print(f"goldenroute: {problem}", file=sys.stderr)
        return 2

    with _quiet_sdk():
        async with Previewer.start() as previewer:
            if args.compare:
                old, new = rules
                changes = []
                for member in members:
                    before = await previewer.run(member.events, args.days, old)
                    after = await previewer.run(member.events, args.days, new)
                    changes.append(comparison.compare(before, after))
                previews = [c.after for c in changes]
            else:
                previews = [await previewer.run(m.events, args.days, rules[0] if rules else None) for m in members]

    for preview in previews:
        for note in report_problems(preview):
            print(f"goldenroute: {note}", file=sys.stderr)
    if args.compare:
        old_name, new_name = args.compare
        emit(comparison.to_json(changes, old_name, new_name) if args.json
             else "\n\n".join(comparison.to_table(c, old_name, new_name) for c in changes))
    elif args.json:
        # One file: the SPEC's array of touches. Several files, or a directory: one object, a member each.
        one_file = len(args.files) == 1 and not Path(args.files[0]).is_dir()
        emit(to_json(previews[0]) if one_file else members_json(previews))
    else:
        emit("\n\n".join(to_table(p, args.config) for p in previews))
    return 0


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The worker's start and stop lines (one pair a run) are noise here."""
    sdk_log = logging.getLogger("temporalio")
    level = sdk_log.level
    sdk_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        sdk_log.setLevel(level)
