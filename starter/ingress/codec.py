"""``/codec``: Temporal's remote codec endpoint, so the Web UI and the CLI show payloads as JSON.

Payloads are stored deflated (``worker.converter.ZlibCodec``). The Web UI (``temporal server
start-dev --ui-codec-endpoint``, or the UI's "Codec Server" setting) and ``temporal workflow
show --codec-endpoint URL`` send the payloads they display to ``POST {URL}/decode`` and show
what comes back. The protocol is Temporal's: a JSON body ``{"payloads": [...]}`` in the
protobuf JSON form of ``temporal.api.common.v1.Payloads``, the same form back.

The codec is a pure function, no key and no secret, so the endpoint needs no signature and
answers any origin (the browser calls it from the Web UI's page): it tells a caller nothing
that the bytes they send do not already hold. Histories carry no personal data either way.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from worker.converter import compress, decompress

PREFIX = "/codec"
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def mount_codec(app: FastAPI) -> None:
    @app.options(PREFIX + "/{operation}", include_in_schema=False)
    async def preflight(operation: str, request: Request) -> Response:
        return Response(status_code=204, headers=_cors(request))

    @app.post(PREFIX + "/encode", include_in_schema=False)
    async def encode(request: Request) -> Response:
        return await _convert(request, compress)

    @app.post(PREFIX + "/decode", include_in_schema=False)
    async def decode(request: Request) -> Response:
        return await _convert(request, decompress)


async def _convert(request: Request, convert) -> Response:
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
        converted = Payloads(payloads=[convert(p) for p in payloads.payloads])
    except Exception as error:  # a body that is not Payloads JSON, or a payload that is not zlib
        return JSONResponse({"error": f"payloads: {error}"}, status_code=400, headers=_cors(request))
    return Response(json_format.MessageToJson(converted), media_type="application/json", headers=_cors(request))


def _cors(request: Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
