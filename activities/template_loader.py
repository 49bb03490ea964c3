"""The templates: the built-in ones, a shop's own over them, where a step's is looked up,
and where in a template an error happened.

Kept apart from rendering so that the lookup order a shop reads in the README and
the one ``render`` and ``check_templates`` use are one list.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from jinja2 import ChoiceLoader, DictLoader, Environment, FileSystemLoader, TemplateSyntaxError

from activities.message_context import NamedUndefined
from workflows.events import Channel

TEMPLATES_DIR = Path(__file__).with_name("templates")
ENVIRONMENTS_KEPT = 8  # one per configuration version in use is plenty


class _ShopTemplates(DictLoader):
    """A shop's templates; their file name in an error says they are the shop's."""

    def get_source(self, environment: Environment, template: str):  # type: ignore[no-untyped-def]
        source, _, uptodate = super().get_source(environment, template)
        return source, f"shop:{template}", uptodate


_environments: OrderedDict[str, Environment] = OrderedDict()


def environment(templates: Mapping[str, str] | None = None) -> Environment:
    """The Jinja environment of one set of shop templates, kept while it is among the few in use:
    compiled templates are reused, and a new version's templates are never mixed with an old one's."""
    overrides = dict(templates or {})
    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    env = _environments.get(digest)
    if env is not None:
        _environments.move_to_end(digest)
        return env
    # Plain text, never HTML: no autoescape. A missing variable is an error naming it, not a blank.
    env = Environment(
        loader=ChoiceLoader([_ShopTemplates(overrides), FileSystemLoader(TEMPLATES_DIR)]),
        undefined=NamedUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    _environments[digest] = env
    while len(_environments) > ENVIRONMENTS_KEPT:
        _environments.popitem(last=False)
    return env


def lookup_names(scenario: str, step: str, channel: Channel, variant: str | None) -> list[str]:
    """Most specific first: the variant's copy for this channel, the variant's, the channel's, the step's."""
    base = f"{scenario}/{step}"
    own = [f"{base}.{variant}.{channel.value}.j2", f"{base}.{variant}.j2"] if variant else []
    return [*own, f"{base}.{channel.value}.j2", f"{base}.j2"]


def where_it_failed(error: BaseException, chosen: str | None) -> str:
    """`` (line 4)``, or `` (at _layouts/email.j2 line 12)`` when the error is in another template
    than the chosen one (a layout, a part); ``""`` when Jinja does not say."""
    name, line = _location(error)
    if name is None or line is None:
        return ""
    return f" (line {line})" if name == chosen else f" (at {name} line {line})"


def _location(error: BaseException) -> tuple[str | None, int | None]:
    if isinstance(error, TemplateSyntaxError):
        return error.name, error.lineno
    # Jinja rewrites a rendering error's traceback into frames of the templates, innermost last.
    found: tuple[str | None, int | None] = (None, None)
    frame = error.__traceback__
    while frame is not None:
        name = _template_name(frame.tb_frame.f_code.co_filename)
        if name is not None:
            found = (name, frame.tb_lineno)
        frame = frame.tb_next
    return found


def _template_name(filename: str) -> str | None:
    if filename.startswith("shop:"):
        return filename.removeprefix("shop:")
    path = Path(filename)
    if path.suffix == ".j2" and path.is_relative_to(TEMPLATES_DIR):
        return path.relative_to(TEMPLATES_DIR).as_posix()
    return None
