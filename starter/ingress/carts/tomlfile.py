"""Reading a TOML file into a pydantic model, with errors that name the file and the key."""

from __future__ import annotations

import tomllib
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_toml(model: type[M], text: str, origin: str, error: type[Exception], root: str = "") -> M:
    """``model`` from TOML ``text``; ``error(message)`` names ``origin`` and each bad key (``root`` for none)."""
    try:
        return model.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{origin}: not TOML: {problem}") from None
    except ValidationError as problem:
        raise error(f"{origin}: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in problem.errors())) from None
