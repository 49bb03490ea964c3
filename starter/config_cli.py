"""``goldenroute config``: the shop configuration file (SPEC §7) from the command line.

``config check FILE`` says whether a file can be applied — every problem on its own
line, naming the file, the line and the key — and, if it can, what it configures.
``config show FILE`` prints the configuration in force with every default filled
in, so a shop sees what the file it did not write out means. Neither needs a
running engine: they read the file only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Mapping

from starter.cli import emit
from starter.config_view import effective, summary, to_text
from worker.settings import Settings
from worker.shop_config import LoadedShop, ShopConfigError, load_shop_config
from workflows.shop import ShopConfig

TemplateCheck = Callable[[ShopConfig, Mapping[str, str]], list[str]]


def add_config_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``config`` and its actions; returns the actions' subparsers so that more can be added."""
    config = commands.add_parser(
        "config", help="the shop configuration file: check it, or show it with every default filled in")
    actions = config.add_subparsers(required=True, metavar="ACTION")

    check = actions.add_parser(
        "check", help="validate a shop file and its templates: each problem with its file, line and key")
    check.add_argument("file", metavar="FILE", help="the shop configuration (see examples/shop.toml)")
    check.set_defaults(command=_check)

    show = actions.add_parser("show", help="the configuration a shop file means, every default filled in")
    show.add_argument("file", metavar="FILE", help="the shop configuration (see examples/shop.toml)")
    show.add_argument("--json", action="store_true", help="print it as one JSON object")
    show.set_defaults(command=_show)

    # `config apply FILE` and `config versions`: a file as a new version for running members.
    from starter.config_store import add_store_commands

    add_store_commands(actions)
    return actions


def _load(path: str) -> LoadedShop | None:
    try:
        return load_shop_config(path)
    except ShopConfigError as error:
        for problem in error.problems:
            print(problem)
        return None


async def _check(settings: Settings, args: argparse.Namespace) -> int:
    shop = _load(args.file)
    if shop is None:
        return 1
    check = template_check()
    if check is None:
        print("goldenroute: templates not rendered: this build cannot check them yet "
              "(activities.render.check_templates)", file=sys.stderr)
    else:
        problems = check(shop.config, shop.templates)
        for problem in problems:
            print(problem)
        if problems:
            return 1
    print("\n".join(summary(shop)))
    return 0


def template_check() -> TemplateCheck | None:
    """The renderer's own check of every template against a configuration, where this build has it."""
    try:
        from activities import render

        return render.check_templates
    except (ImportError, AttributeError):
        return None


async def _show(settings: Settings, args: argparse.Namespace) -> int:
    shop = _load(args.file)
    if shop is None:
        return 1
    if args.json:
        emit(json.dumps(effective(shop.config).model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        emit("\n".join(to_text(shop)))
    return 0
