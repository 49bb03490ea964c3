"""Payloads stored deflated (worker.converter.ZlibCodec), and the /codec endpoint the Web UI reads them through."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import httpx
from fastapi import FastAPI
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.converter import DataConverter

from starter.ingress.codec import mount_codec
from worker.converter import DATA_CONVERTER, ZLIB, compress, decode_history, decompress
from workflows.lifecycle import new_member
from workflows.messages import MemberInput

STATE = MemberInput(member_id="m-1", state=new_member("m-1"))


async def test_a_member_input_is_stored_deflated_and_reads_back_the_same():
    (stored,) = await DATA_CONVERTER.encode([STATE])
    plain = (await DataConverter.default.encode([STATE.model_dump(mode="json")]))[0]
    assert stored.metadata["encoding"] == ZLIB
    assert stored.ByteSize() < plain.ByteSize() * 0.6  # a new member; a year-old state deflates to a fifth
    (back,) = await DATA_CONVERTER.decode([stored], [MemberInput])
    assert back == STATE


async def test_a_payload_that_would_not_shrink_is_stored_as_it_was():
    (stored,) = await DATA_CONVERTER.encode(["ok"])
    assert stored.metadata["encoding"] == b"json/plain" and stored.data == b'"ok"'


async def test_a_payload_written_before_the_codec_decodes_unchanged():
    before = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(STATE.model_dump(mode="json")).encode())
    (back,) = await DATA_CONVERTER.decode([before], [MemberInput])
    assert back == STATE


def test_decode_history_reads_every_payload_of_every_event():
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"member_id":"m-1","type":"order_placed"' + b" " * 200 + b"}")
    packed = compress(plain)
    assert packed.metadata["encoding"] == ZLIB and b"order_placed" not in packed.SerializeToString()
    event = HistoryEvent(event_id=5)
    event.workflow_execution_signaled_event_attributes.input.payloads.append(packed)
    event.event_time.FromDatetime(datetime(2026, 12, 2, tzinfo=timezone.utc))
    history = decode_history(History(events=[event]))
    assert history.events[0].workflow_execution_signaled_event_attributes.input.payloads[0] == plain


def _app() -> httpx.AsyncClient:
    app = FastAPI()
    mount_codec(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress")


def _json(payloads: list[Payload]) -> dict:
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


async def test_the_codec_endpoint_decodes_for_the_web_ui():
    (stored,) = await DATA_CONVERTER.encode([STATE])
    small = Payload(metadata={"encoding": b"json/plain"}, data=b"1")
    async with _app() as http:
        answer = await http.post("/codec/decode", json=_json([stored, small]),
                                 headers={"Origin": "http://localhost:8233", "X-Namespace": "default"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://localhost:8233"
        decoded = [base64.b64decode(p["data"]) for p in answer.json()["payloads"]]
        assert json.loads(decoded[0])["member_id"] == "m-1" and decoded[1] == b"1"

        preflight = await http.options("/codec/decode", headers={
            "Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        assert preflight.status_code == 204
        assert "X-Namespace" in preflight.headers["access-control-allow-headers"]

        encoded = await http.post("/codec/encode", json=answer.json())
        round_trip = Payloads(payloads=[Payload(metadata={k: base64.b64decode(v) for k, v in p["metadata"].items()},
                                                data=base64.b64decode(p["data"])) for p in encoded.json()["payloads"]])
        assert [decompress(p) for p in round_trip.payloads] == [decompress(stored), small]

        bad = await http.post("/codec/decode", content=b"not json")
        assert bad.status_code == 400 and bad.json()["error"].startswith("payloads:")
