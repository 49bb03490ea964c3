"""What LINE accepts as a push message, read from LINE's own OpenAPI document.

openapi-core checks a request against the ``pushMessage`` operation as the document
states it (the Bearer scheme, the ``X-Line-Retry-Key`` header's UUID format, the
``PushMessageRequest`` body). It does not follow the discriminator of ``Message``, so
each message is checked here against the schema its ``type`` maps to (``text`` →
``TextMessage``). Two rules of LINE's reference that the document does not carry are
added: a text holds at most 5,000 UTF-16 code units, and ``to`` is a LINE id (``U``, ``C``
or ``R`` and hex digits; real ones have 32, the example data's are shorter).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
from openapi_core.validation.request.exceptions import (
    MissingRequestBodyError,
    ParameterValidationError,
    RequestBodyValidationError,
    SecurityValidationError,
)
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue
from openapi_schema_validator import OAS30WriteValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

# LINE's facts, stated here apart from the sender's so that the stand-in checks it independently.
PUSH_PATH = "/v2/bot/message/push"
MAX_TEXT_LENGTH = 5000  # UTF-16 code units
SERVER = "https://api.line.me"  # the document's server; openapi-core finds operations under it
DOCUMENT_URI = "urn:line:messaging-api"
LINE_ID = re.compile(r"[UCR][0-9a-f]{1,32}")
REQUIRED = re.compile(r"'(.*)' is a required property$")


def find_document() -> Path | None:
    """LINE's document: the copy shipped beside this module (line-openapi/, Apache 2.0, as
    LINE publishes it), else the workplace's shared/vendor/ beside the checkout."""
    shipped = Path(__file__).with_name("line-openapi") / "messaging-api.yml"
    if shipped.is_file():
        return shipped
    checkout = Path(__file__).resolve().parents[2]
    path = checkout.parent / "shared" / "vendor" / "line-openapi" / "messaging-api.yml"
    return path if path.is_file() else None


@dataclass(frozen=True)
class Problem:
    """Why LINE would refuse a push: ``status`` and an ErrorResponse."""

    status: int
    message: str
    details: tuple[dict[str, str], ...] = field(default=())

    def error_response(self) -> dict[str, Any]:
        return {"message": self.message, **({"details": list(self.details)} if self.details else {})}


@dataclass
class _Request:
    """A push as openapi-core reads one, placed under the document's server."""

    parameters: RequestParameters
    body: bytes | None
    content_type: str
    host_url: str = SERVER
    path: str = PUSH_PATH
    method: str = "post"


class PushContract:
    def __init__(self, document: dict[str, Any]) -> None:
        # The vendor publishes the document; checking it again costs seconds and proves nothing here.
        self._api = OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))
        resource = Resource.from_contents(document, default_specification=DRAFT4)
        registry = Registry().with_resource(DOCUMENT_URI, resource)
        mapping = document["components"]["schemas"]["Message"]["discriminator"]["mapping"]
        self._message_schemas = {
            kind: OAS30WriteValidator({"$ref": DOCUMENT_URI + ref}, registry=registry,
                                      format_checker=oas30_format_checker)
            for kind, ref in mapping.items()}

    def problem(self, headers: Mapping[str, str], body: bytes, content_type: str) -> Problem | None:
        """The first reason LINE would refuse this push, or None. ``headers``: case-insensitive."""
        request = _Request(RequestParameters(header=headers), body or None, content_type)
        try:
            self._api.validate_request(request)
        except SecurityValidationError:
            return Problem(401, "Authorization header required. Must follow the scheme, "
                                "'Authorization: Bearer <ACCESS TOKEN>'")
        except ParameterValidationError as error:
            return Problem(400, f"The value for the '{error.name}' header is invalid")
        except MissingRequestBodyError:
            return Problem(400, "The request body is required")
        except RequestBodyValidationError as error:
            cause = error.__cause__
            if isinstance(cause, InvalidSchemaValue):
                return _body_problem([_detail(e, []) for e in cause.schema_errors])
            if isinstance(cause, MediaTypeNotFound):
                return Problem(400, "The request body must be application/json")
            return Problem(400, "The request body is not valid JSON")  # its text is not repeated: personal data
        return self._line_rules(json.loads(body))

    def _line_rules(self, push: dict[str, Any]) -> Problem | None:
        found: list[tuple[str, str]] = []
        for index, message in enumerate(push["messages"]):
            where = f"messages[{index}]"
            schema = self._message_schemas.get(message["type"])
            if schema is None:
                found.append((f"{where}.type", f"must be one of {sorted(self._message_schemas)}"))
                continue
            found += [_detail(e, [where]) for e in schema.iter_errors(message)]
            text = message.get("text")
            if isinstance(text, str) and len(text.encode("utf-16-le")) // 2 > MAX_TEXT_LENGTH:
                found.append((f"{where}.text", f"Length must be between 0 and {MAX_TEXT_LENGTH}"))
        if found:
            return _body_problem(found)
        if not LINE_ID.fullmatch(push["to"]):
            return Problem(400, "The property, 'to', in the request body is invalid (line: -, column: -)")
        return None


@functools.lru_cache(maxsize=4)
def load_contract(path: Path) -> PushContract:
    """The contract of the document at ``path``, read once per process."""
    with path.open("rb") as stream:
        return PushContract(yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def _body_problem(found: list[tuple[str, str]]) -> Problem:
    return Problem(400, f"The request body has {len(found)} error(s)",
                   tuple({"message": message, "property": where} for where, message in found))


def _property(path) -> str:
    """A JSON path as LINE writes it in ErrorDetail.property: messages[0].text."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _detail(error, prefix: list) -> tuple[str, str]:
    """A jsonschema error as LINE's (property, message), never echoing the value (it may be a
    user id)."""
    keyword, expected, path = error.validator, error.validator_value, [*prefix, *error.absolute_path]
    if keyword == "required":
        missing = REQUIRED.match(error.message)  # one error per missing property, named in its message
        return _property([*path, missing[1] if missing else "?"]), "must be specified"
    if keyword in ("type", "format"):
        message = f"must be of {keyword} {expected}"
    elif keyword in ("minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum"):
        message = f"{keyword} is {expected}"
    elif keyword == "enum":
        message = f"must be one of {expected}"
    else:
        message = f"does not satisfy {keyword}"
    return _property(path), message
