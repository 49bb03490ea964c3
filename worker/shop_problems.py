"""A shop file's validation errors as a person fixes them: ``FILE:LINE: dotted.key: problem``.

Pydantic names each bad value by its path (``("scenarios", "S08", "every_days")``);
``worker.toml_lines`` finds the line that path is written on (or its table's, for a
key that is missing). The consistency checks of ``ShopConfig`` (a cross SKU that is
not in the catalogue, a seed-fixed step moved) arrive as one message,
``"a.b: problem; c.d: problem"``: each part is located on its own. An unknown key
says so and suggests the known key it is closest to, since a typo is the usual cause.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Iterator, Mapping, Sequence, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from worker.toml_lines import Path, line_of

_VALUE_ERROR = "Value error, "
_PART = re.compile(r"^(?P<path>[^\s:;]+): (?P<problem>.+)$", re.DOTALL)
_PLAIN_KEY = re.compile(r"^[^.\s\"']+$")


def located(error: ValidationError, model: type[BaseModel], data: Mapping[str, Any],
            lines: dict[Path, int], origin: str) -> list[str]:
    """One ``origin:line: key: problem`` per problem of ``error``, in the order of the file's lines."""
    found = []
    for detail in error.errors():
        for path, key, problem in _problems(detail, model, data):
            line = line_of(lines, path)
            found.append((line or 0, f"{origin}{f':{line}' if line else ''}: {key}: {problem}"))
    return [text for _, text in sorted(found, key=lambda f: f[0])]


def _problems(detail: dict, model: type[BaseModel], data: Mapping[str, Any]) -> Iterator[tuple[Path, str, str]]:
    loc = tuple(detail["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"  # a dict key that is not valid (S13, a channel typo)
    path = loc[:-1] if is_key else loc
    message = detail["msg"]
    if detail["type"] == "extra_forbidden":
        yield path, dotted(path), unknown_key(model, path)
    elif detail["type"] == "value_error":
        message = message.removeprefix(_VALUE_ERROR)
        for part in _parts(message) if not path else [message]:
            match = _PART.match(part)
            if match and not path:  # the whole file's consistency check names its own keys
                yield split_dotted(match["path"], data), match["path"], match["problem"]
            else:
                yield path, dotted(path) or "(file)", part
    else:
        yield path, dotted(path) or "(file)", f"{message} (the key itself)" if is_key else message


def _parts(message: str) -> list[str]:
    """``"a.b: one; c: two; and more"`` → ``["a.b: one", "c: two; and more"]``: a new part
    starts only where a key path does."""
    parts: list[str] = []
    for piece in message.split("; "):
        if parts and not _PART.match(piece):
            parts[-1] += f"; {piece}"
        else:
            parts.append(piece)
    return parts


def dotted(path: Sequence[str | int]) -> str:
    """``catalogue.KOSO-30.cross.1``; a key that would read ambiguously is quoted as TOML quotes it."""
    return ".".join(str(p) if isinstance(p, int) or _PLAIN_KEY.match(p) else f'"{p}"' for p in path)


def split_dotted(text: str, data: Any) -> Path:
    """``"catalogue.KOSO.30.cross"`` → ``("catalogue", "KOSO.30", "cross")`` when the data has a SKU
    ``KOSO.30``: at each level the longest run of parts that is a key of the data wins."""
    parts, path = text.split("."), []
    node = data
    while parts:
        if isinstance(node, Mapping):
            for size in range(len(parts), 0, -1):
                key = ".".join(parts[:size])
                if key in node:
                    path.append(key)
                    node, parts = node[key], parts[size:]
                    break
            else:
                return (*path, *parts)
        elif isinstance(node, list) and parts[0].isdigit() and int(parts[0]) < len(node):
            path.append(int(parts[0]))
            node, parts = node[int(parts[0])], parts[1:]
        else:
            return (*path, *parts)
    return tuple(path)


def unknown_key(model: type[BaseModel], path: Path) -> str:
    known = known_keys(model, path[:-1])
    close = difflib.get_close_matches(str(path[-1]), known, n=1) if path else []
    return "unknown key" + (f'; did you mean "{close[0]}"?' if close else
                            f" (known here: {', '.join(known)})" if known else "")


def known_keys(model: type[BaseModel], path: Path) -> list[str]:
    """The keys the model allows at ``path`` (a table of the file), or [] where any key goes."""
    node: Any = model
    for part in path:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        elif get_origin(node) in (dict, Mapping):
            node = get_args(node)[1]
        elif get_origin(node) in (list, tuple):
            node = get_args(node)[0]
        else:
            return []
    node = _unwrap(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _unwrap(node: Any) -> Any:
    """``Annotated[X, …]`` and ``X | None`` → ``X``."""
    while True:
        origin = get_origin(node)
        if origin is Annotated:
            node = get_args(node)[0]
        elif origin in (Union, types.UnionType):
            others = [a for a in get_args(node) if a is not type(None)]
            if len(others) != 1:
                return node
            node = others[0]
        else:
            return node
