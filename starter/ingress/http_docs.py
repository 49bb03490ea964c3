"""The ingress's OpenAPI document: the request body is the event contract itself.

``POST /v1/events`` reads its raw body (the signature covers the exact bytes), so
FastAPI cannot infer a body schema from the handler; the schema is declared here from
``workflows.events.MemberEvent``, the same discriminated union every ingress
validates with, and its models are added to the document's components.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from starter.ingress.signing import SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER
from worker.settings import Settings
from workflows.events import EVENT_ADAPTER

EVENT_REF = {"$ref": "#/components/schemas/MemberEvent"}
SIGNED = {"source": [], "timestamp": [], "signature": []}  # all three headers together

DESCRIPTION = """\
Order systems submit member events here: one event, a JSON array of events, or NDJSON.
The body is the event contract of goldenroute (`MemberEvent`, discriminated on `type`).

**Signing.** Every request carries `X-Goldenroute-Source` (the order system's name),
`X-Goldenroute-Timestamp` (unix seconds, within the replay window) and
`X-Goldenroute-Signature`: hex HMAC-SHA256 of `"{timestamp}." + raw body` with the
source's secret. Anything else is refused with 401 and nothing is stored.

**Answers.** Each event is `accepted` (committed to the event log; forwarded to the member's
workflow from there), a `duplicate` (its `event_id` was seen before) or `rejected` with
`field: message` problems. 200 when at least one event was accepted or a duplicate
(`X-Goldenroute-Rejected` counts the rejected ones), 422 when every event was rejected,
413 over the size or batch limit, 503 while PostgreSQL is unavailable. Sending a batch
again is always safe.
"""

_SCHEMES = {
    "source": (SOURCE_HEADER, "The order system's name, as configured in GOLDENROUTE_INGRESS_SECRETS."),
    "timestamp": (TIMESTAMP_HEADER, "Unix seconds; refused outside the replay window (INGRESS_REPLAY_WINDOW)."),
    "signature": (SIGNATURE_HEADER, "hex(HMAC-SHA256(secret, f\"{timestamp}.\" + raw body))."),
}


def submission_openapi(settings: Settings, result: type[BaseModel]) -> dict:
    """``openapi_extra`` and ``responses`` of ``POST /v1/events``."""
    body = {
        "required": True,
        "description": "One event, a JSON array of events, or NDJSON (one event a line), told apart by the "
                       "body itself. Items are numbered from 1: array position, or line.",
        "content": {
            "application/json": {"schema": {"oneOf": [
                EVENT_REF, {"type": "array", "items": EVENT_REF, "maxItems": settings.ingress_max_batch}]}},
            "application/x-ndjson": {"schema": EVENT_REF},
        },
    }
    detail = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
    return {
        "openapi_extra": {"requestBody": body},
        "responses": {
            200: {"description": "At least one event accepted or a duplicate; the others' problems are listed "
                                 "(X-Goldenroute-Rejected: how many were rejected)."},
            400: {"description": "The body holds no event.", "content": detail},
            401: {"description": "Missing, invalid or stale signature; nothing was stored.", "content": detail},
            413: {"description": f"Body over {settings.ingress_max_body_bytes} bytes or more than "
                                 f"{settings.ingress_max_batch} events; nothing was stored.", "content": detail},
            422: {"description": "Every event was rejected; nothing was stored.", "model": result},
            503: {"description": "PostgreSQL is unavailable; nothing was stored. Send again after Retry-After.",
                  "content": detail},
        },
    }


def install_openapi(app: FastAPI, *, insecure: bool) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            event = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update({**event.pop("$defs", {}), "MemberEvent": event})
            if not insecure:
                components["securitySchemes"] = {
                    name: {"type": "apiKey", "in": "header", "name": header, "description": text}
                    for name, (header, text) in _SCHEMES.items()}
                for operation in schema["paths"].get("/v1/events", {}).values():
                    operation["security"] = [SIGNED]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
