"""Loading a shop's configuration file (SPEC §7): TOML in, ``ShopConfig`` and its templates out.

The models (``workflows.shop``) say what is valid; this module reads the file,
reads the shop's own templates beside it, and turns every problem into a line a
person can act on: ``examples/shop.toml:42: scenarios.S08.every_days: Input
should be greater than or equal to 7``. It raises every problem it found at
once (``ShopConfigError.problems``), so one ``goldenroute config check`` shows
them all. ``LoadedShop.digest`` fingerprints the file and its templates, so that
a version records exactly what was applied.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pydantic import TypeAdapter, ValidationError

from worker.shop_problems import located
from worker.toml_lines import key_lines, line_of
from workflows.broadcasts import BROADCAST
from workflows.events import BroadcastName, Channel
from workflows.policy import OFFLINE_ROUTE, ONLINE_ROUTE
from workflows.scenarios import BY_SCENARIO, Scenario
from workflows.shop import ShopConfig

# Where a routed step may go (the delivery policy's routes); a step with its own channel goes only there.
ROUTED_CHANNELS = tuple(dict.fromkeys(ONLINE_ROUTE + OFFLINE_ROUTE))
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_BROADCAST_TEMPLATE = TypeAdapter(BroadcastName)


class ShopConfigError(ValueError):
    """A shop file that cannot be used: every problem, each naming the file, the line and the key."""

    def __init__(self, problems: Iterable[str] | str) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class LoadedShop:
    path: Path
    config: ShopConfig
    source: str  # the file's text, as applied
    templates: dict[str, str]  # "S06/upsell.line.j2" → its text
    digest: str  # sha256 of the source and the templates


def load_shop_config(path: str | Path) -> LoadedShop:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ShopConfigError([f"{path}: no such file (examples/shop.toml shows the shape of one)"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ShopConfigError([f"{path}: cannot be read: {error}"]) from None
    return parse_shop_config(text, str(path), path.parent, path=path)


def parse_shop_config(text: str, origin: str, base_dir: str | Path, *, path: Path | None = None) -> LoadedShop:
    """``text`` as a shop file; ``origin`` names it in errors; the templates directory is
    relative to ``base_dir`` (the file's own directory)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = re.search(r"at line (\d+)", str(error))
        raise ShopConfigError([f"{origin}{f':{line[1]}' if line else ''}: not TOML: {error}"]) from None
    lines = key_lines(text)
    try:
        config = ShopConfig.model_validate(data)
    except ValidationError as error:
        raise ShopConfigError(located(error, ShopConfig, data, lines, origin)) from None
    templates = _read_templates(config, Path(base_dir), origin, line_of(lines, ("templates", "directory")))
    return LoadedShop(path=path or Path(origin), config=config, source=text, templates=templates,
                      digest=digest(text, templates))


def digest(source: str, templates: dict[str, str]) -> str:
    """sha256 over the file and each template (name and text, length-prefixed: no two inputs collide)."""
    sha = hashlib.sha256()
    for part in (source, *(p for name in sorted(templates) for p in (name, templates[name]))):
        data = part.encode("utf-8")
        sha.update(len(data).to_bytes(8, "big") + data)
    return sha.hexdigest()


def _read_templates(config: ShopConfig, base_dir: Path, origin: str, line: int | None) -> dict[str, str]:
    if config.templates.directory is None:
        return {}
    directory = base_dir / config.templates.directory
    if not directory.is_dir():
        raise ShopConfigError([f"{origin}{f':{line}' if line else ''}: templates.directory: "
                               f"{directory} is not a directory"])
    templates, problems = {}, []
    for file in sorted(directory.rglob("*.j2")):
        name = file.relative_to(directory).as_posix()
        problem = template_name_problem(name, config)
        if problem is None:
            try:
                templates[name] = file.read_text(encoding="utf-8")
                continue
            except (OSError, UnicodeDecodeError) as error:
                problem = f"cannot be read: {error}"
        problems.append(f"{file}: {problem}")
    if problems:
        raise ShopConfigError(problems)
    return templates


def template_name_problem(name: str, config: ShopConfig) -> str | None:
    """Why ``name`` (relative to the templates directory) is not a template the renderer would
    use, or None: ``<S01..S12>/<step>[.<variant>][.<channel>].j2``, ``BC/<template>[.<channel>].j2``
    (a broadcast's copy), ``_layouts/<channel>.j2`` or ``_parts/<name>.j2``. A misspelt name
    would otherwise be silently ignored."""
    folder, _, file = name.partition("/")
    stem = file.removesuffix(".j2")
    shape = ("expected <S01..S12>/<step>[.<variant>][.<channel>].j2, BC/<template>[.<channel>].j2, "
             "_layouts/<channel>.j2 or _parts/<name>.j2")
    if not file or "/" in file or not stem:
        return shape
    channels = [c.value for c in Channel]
    if folder == BROADCAST:
        return _broadcast_template_problem(stem)
    if folder == "_layouts":
        return None if stem in channels else f"no channel {stem!r} for a layout (channels: {', '.join(channels)})"
    if folder == "_parts":
        return None if _NAME.match(stem) else f"a part's name is letters, digits, _ and - only: {stem!r}"
    try:
        template = BY_SCENARIO[Scenario(folder)]
    except ValueError:
        return shape
    step_name, *rest = stem.split(".")
    step = next((s for s in template.steps if s.name == step_name), None)
    if step is None:
        return f"{folder} has no step {step_name!r} (it has {', '.join(s.name for s in template.steps)})"
    channel = rest.pop() if rest and rest[-1] in channels else None
    if len(rest) > 1:
        return shape
    if rest:
        rules = config.scenarios.get(template.scenario)
        variants = list(rules.variants) if rules and rules.variants else list(template.variants)
        if rest[0] not in variants:
            known = f"its variants: {', '.join(variants)}" if variants else "it has no variants"
            return f"{folder} has no variant {rest[0]!r} ({known}; or {rest[0]!r} is not a channel: {', '.join(channels)})"
    allowed = [step.channel] if step.channel is not None else list(ROUTED_CHANNELS)
    if channel is not None and Channel(channel) not in allowed:
        return f"{folder}.{step.name} never goes out on {channel} (only on {', '.join(c.value for c in allowed)})"
    return None


def _broadcast_template_problem(stem: str) -> str | None:
    """``BC/<template>[.<channel>].j2``: the template a [broadcasts.NAME] names (its name unless it
    names another), for every channel or for one a broadcast can use."""
    from activities.render import BROADCAST_CHANNELS

    template, *rest = stem.split(".")
    try:
        _BROADCAST_TEMPLATE.validate_python(template)
    except ValidationError:
        return (f"{template!r} is not a broadcast template's name (a-z, 0-9 and _, starting with a letter, "
                "as in [broadcasts.NAME] template); expected BC/<template>[.<channel>].j2")
    allowed = [c.value for c in BROADCAST_CHANNELS]
    if len(rest) > 1 or (rest and rest[0] not in allowed):
        return (f"expected BC/<template>[.<channel>].j2: {'.'.join(rest)!r} is not a channel a broadcast "
                f"can use ({', '.join(allowed)})")
    return None
