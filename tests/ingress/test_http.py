"""The HTTP ingress against the real app, a real PostgreSQL and, for forwarding, the dev server.

Requests go through httpx's ASGI transport into the FastAPI app built by
``create_app`` with real objects: the session's migrated pool, a Forwarder and a
worker on the Temporal dev server. Each test uses its own members.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from activities import db
from starter.ingress.forwarder import Forwarder
from starter.ingress.http import EVENTS_PATH, REJECTED_HEADER, create_app
from starter.ingress.metrics import EVENT_FIELDS
from starter.ingress.signing import SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER, signed_headers
from worker.main import build_worker
from worker.settings import Settings
from workflows.events import EVENT_TYPES
from workflows.member import MemberWorkflow, workflow_id

SOURCE, SECRET = "ec-cube", "s3cret-of-the-shop"
SETTINGS = Settings(ingress_secrets={SOURCE: SECRET, "shopify": "other"}, ingress_max_body_bytes=64 * 1024,
                    ingress_max_batch=50)
PROBLEM = re.compile(r"^(\(event\)|\(line\)|[^\W\d]\w*)(\.\w+)*: .+", re.S)


def member() -> str:
    return f"m-http-{uuid.uuid4().hex[:10]}"


def event(member_id: str, type: str = "order_shipped", n: int = 1, **fields) -> dict:
    defaults = {"order_shipped": {"order_id": "o1"}, "order_placed": {
        "order_id": "o1", "lines": [{"sku": "KOSO-30", "role": "main", "days_supply": 30, "unit_price": 3980}]},
        "member_registered": {"consent": {"email": True}, "contact": {"email": f"{member_id}@example.jp"}}}
    return {"type": type, "event_id": f"{member_id}-e{n}", "member_id": member_id,
            "occurred_at": "2026-04-01T12:00:00+09:00", **defaults.get(type, {}), **fields}


def signed(body: bytes, secret: str = SECRET, source: str = SOURCE, timestamp: int | None = None) -> dict:
    return signed_headers(source, secret, body, timestamp)


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress")


@pytest.fixture(scope="module")
async def http(pool) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(SETTINGS, pool, None, None)) as client:
        yield client


async def post(http: httpx.AsyncClient, payload: object | bytes, content_type: str = "application/json",
               **header_overrides: str) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {**signed(body), "Content-Type": content_type, **header_overrides}
    return await http.post(EVENTS_PATH, content=body, headers=headers)


async def logged(pool, member_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM member_events WHERE member_id = $1", member_id)


# --- accepted, and forwarded to the workflow ------------------------------------------------


async def test_a_signed_event_is_committed_then_forwarded_to_its_workflow(pool, dev_server_env, task_queue):
    client, m = dev_server_env.client, member()
    forwarder = Forwarder(pool, client, task_queue, interval=0.2)
    app = create_app(SETTINGS, pool, forwarder, client)
    worker = build_worker(client, pool, Settings(task_queue=task_queue))
    forwarding = asyncio.create_task(forwarder.run())
    try:
        async with worker, client_for(app) as http:
            assert (await http.get("/readyz")).json() == {"postgresql": "ok", "temporal": "ok"}
            response = await post(http, [event(m, "member_registered", 1), event(m, "order_placed", 2)])
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 2 and response.headers[REJECTED_HEADER] == "0"
            assert await logged(pool, m) == 2  # committed when the answer came
            state = await _eventually_state(client, m, lambda s: s.purchase_count == 1)
            assert state.member_id == m and "email" in [c.value for c in state.reachable_channels]
            unforwarded = "SELECT count(*) FROM member_events WHERE member_id = $1 AND forwarded_at IS NULL"
            assert await pool.fetchval(unforwarded, m) == 0
            await client.get_workflow_handle(workflow_id(m)).terminate("test over")
    finally:
        forwarding.cancel()


async def _eventually_state(client, member_id: str, done, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await client.get_workflow_handle(workflow_id(member_id)).query(MemberWorkflow.state)
            if done(state):
                return state
        except Exception:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, "the workflow did not get the forwarded events"
        await asyncio.sleep(0.1)


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("tamper, reason", [
    (lambda h, b: {k: v for k, v in h.items() if k != SIGNATURE_HEADER}, "signature"),
    (lambda h, b: {k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, "timestamp"),
    (lambda h, b: {k: v for k, v in h.items() if k != SOURCE_HEADER}, "signature"),
    (lambda h, b: {**h, SIGNATURE_HEADER: "0" * 64}, "signature"),
    (lambda h, b: signed(b, secret="not-the-secret"), "signature"),
    (lambda h, b: signed(b, secret=SECRET, source="unknown-shop"), "signature"),
    (lambda h, b: signed(b, secret="other"), "signature"),  # another source's secret
    (lambda h, b: signed(b, timestamp=int(time.time()) - 301), "timestamp"),  # replayed after the window
    (lambda h, b: signed(b, timestamp=int(time.time()) + 301), "timestamp"),
    (lambda h, b: {**h, TIMESTAMP_HEADER: "yesterday"}, "timestamp"),
    (lambda h, b: signed(b + b" "), "signature"),  # signed something else than what was sent
], ids=["no-signature", "no-timestamp", "no-source", "zero-signature", "wrong-secret", "unknown-source",
        "other-sources-secret", "stale", "future", "bad-timestamp", "body-changed"])
async def test_unsigned_or_stale_requests_get_401_and_store_nothing(http, pool, tamper, reason):
    m = member()
    body = json.dumps(event(m)).encode()
    headers = tamper(signed(body), body)
    response = await http.post(EVENTS_PATH, content=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.json() == {"detail": f"missing, invalid or stale {reason}"}
    assert await logged(pool, m) == 0


async def test_a_timestamp_inside_the_window_is_accepted(http, pool):
    m = member()
    body = json.dumps(event(m)).encode()
    response = await http.post(EVENTS_PATH, content=body, headers=signed(body, timestamp=int(time.time()) - 290))
    assert response.status_code == 200 and await logged(pool, m) == 1


# --- bodies: single, array, NDJSON; duplicates; rejections -------------------------------------


async def test_one_object_a_json_array_and_ndjson(http, pool):
    m = member()
    single = await post(http, event(m, n=1))
    array = await post(http, [event(m, n=2), event(m, n=3)])
    lines = b"\n".join(json.dumps(event(m, n=n)).encode() for n in (4, 5, 6)) + b"\n"
    ndjson = await post(http, lines, "application/x-ndjson")
    detected = await post(http, b"\n\n" + json.dumps(event(m, n=7)).encode() + b"\n" + json.dumps(event(m, n=8)).encode())
    numbers = [[(r["number"], r["status"]) for r in response.json()["results"]]
               for response in (single, array, ndjson, detected)]
    assert numbers == [[(1, "accepted")], [(1, "accepted"), (2, "accepted")],
                       [(1, "accepted"), (2, "accepted"), (3, "accepted")], [(3, "accepted"), (4, "accepted")]]
    assert await logged(pool, m) == 8


async def test_the_same_batch_twice_adds_nothing(http, pool):
    m = member()
    batch = [event(m, "member_registered", 1), event(m, "order_placed", 2), event(m, n=3)]
    first = await post(http, batch)
    again = await post(http, batch)
    assert (first.status_code, first.json()["accepted"]) == (200, 3)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("accepted", "duplicate", "rejected")} == {"accepted": 0, "duplicate": 3,
                                                                                 "rejected": 0}
    assert [r["event_id"] for r in again.json()["results"]] == [e["event_id"] for e in batch]
    assert await logged(pool, m) == 3


async def test_a_bad_item_is_rejected_with_its_number_and_field_and_the_others_are_accepted(http, pool):
    m = member()
    batch = [event(m, n=1), {**event(m, n=2), "occurred_at": "2026-04-01T12:00:00"}, [1, 2],
             {k: v for k, v in event(m, n=4).items() if k != "order_id"}, event(m, n=5)]
    response = await post(http, batch)
    assert response.status_code == 200 and response.headers[REJECTED_HEADER] == "3"
    results = response.json()["results"]
    assert [(r["number"], r["status"]) for r in results] == [
        (1, "accepted"), (2, "rejected"), (3, "rejected"), (4, "rejected"), (5, "accepted")]
    assert results[1]["problems"] == ["occurred_at: Input should have timezone info"]
    assert results[2]["problems"] == ["(event): must be a JSON object, not an array"]
    assert results[3]["problems"] == ["order_id: Field required"]
    assert await logged(pool, m) == 2


async def test_ndjson_lines_that_are_not_json_are_rejected_by_line(http, pool):
    m = member()
    lines = [json.dumps(event(m, n=1)), "[1, 2]", "{\"type\": ", "[" * 60_000, json.dumps(event(m, n=5)),
             json.dumps({**event(m, "member_registered", 6), "timezone": "UTC" * 100})]
    response = await post(http, "\n".join(lines).encode() + b"\n\xff\xfe\n")
    statuses = {r["number"]: (r["status"], r["problems"][:1]) for r in response.json()["results"]}
    assert response.status_code == 200
    assert [n for n, (status, _) in statuses.items() if status == "accepted"] == [1, 5]
    assert statuses[2] == ("rejected", ["(event): Input should be an object"])
    assert statuses[3][1][0].startswith("(event): Invalid JSON")
    assert "recursion limit" in statuses[4][1][0]
    assert statuses[6][1][0].startswith("timezone: Value error, unknown IANA timezone")
    assert statuses[7] == ("rejected", ["(line): not UTF-8 at byte 1"])


async def test_every_event_rejected_is_422(http, pool):
    m = member()
    response = await post(http, [{**event(m), "type": "order_teleported"}, "not an event"])
    assert response.status_code == 422 and response.headers[REJECTED_HEADER] == "2"
    assert response.json()["rejected"] == 2 and response.json()["results"][0]["problems"][0].startswith("type:")
    assert await logged(pool, m) == 0


async def test_an_empty_body_is_400(http):
    assert (await post(http, b"  \n")).status_code == 400


# --- limits ------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_declared_or_streamed(http, pool):
    m = member()
    body = json.dumps([event(m, n=n, order_id="o" * 120) for n in range(1, 400)]).encode()
    assert len(body) > SETTINGS.ingress_max_body_bytes
    declared = await http.post(EVENTS_PATH, content=body, headers=signed(body))
    assert declared.status_code == 413 and "bytes" in declared.json()["detail"]

    async def chunks():  # no Content-Length: counted while it streams in
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    streamed = await http.post(EVENTS_PATH, content=chunks(), headers=signed(body))
    assert streamed.status_code == 413
    assert await logged(pool, m) == 0


async def test_a_batch_over_the_limit_is_413(http, pool):
    m = member()
    response = await post(http, [event(m, n=n) for n in range(1, SETTINGS.ingress_max_batch + 2)])
    assert response.status_code == 413 and "at most 50" in response.json()["detail"]
    assert await logged(pool, m) == 0


# --- PostgreSQL down, readiness, metrics, OpenAPI -------------------------------------------


async def test_postgresql_down_gives_503_on_submit_and_readyz(database_url):
    closed = await db.create_pool(database_url, min_size=0, max_size=1)
    await closed.close()
    async with client_for(create_app(SETTINGS, closed, None, None)) as http:
        m = member()
        response = await post(http, event(m))
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["postgresql"].startswith("unreachable") and ready.json()["temporal"] != "ok"
        assert (await http.get("/healthz")).status_code == 200
        assert "goldenroute_forward_lag_seconds NaN" in (await http.get("/metrics")).text


async def test_metrics_count_verdicts_rejections_by_field_and_latency(pool):
    async with client_for(create_app(SETTINGS, pool, None, None)) as http:
        m = member()
        await post(http, [event(m, n=1), {k: v for k, v in event(m, n=2).items() if k != "order_id"},
                          {**event(m, n=3), "made_up_field": 1}])
        await post(http, [event(m, n=1)])
        text = (await http.get("/metrics")).text
    for line in ('goldenroute_ingress_events_total{status="accepted"} 1.0',
                 'goldenroute_ingress_events_total{status="duplicate"} 1.0',
                 'goldenroute_ingress_events_total{status="rejected"} 2.0',
                 'goldenroute_ingress_rejected_total{field="order_id"} 1.0',
                 'goldenroute_ingress_rejected_total{field="(unknown)"} 1.0',  # a made-up name is no label
                 'goldenroute_ingress_request_seconds_count{code="200",method="POST",route="/v1/events"} 2.0'):
        assert line in text
    assert re.search(r"^goldenroute_forward_lag_seconds \d", text, re.M)


async def test_openapi_describes_the_body_with_every_event_type(http):
    document = (await http.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    union = schemas["MemberEvent"]
    assert set(union["discriminator"]["mapping"]) == EVENT_TYPES
    for ref in union["discriminator"]["mapping"].values():
        assert ref.rsplit("/", 1)[1] in schemas
    body = document["paths"][EVENTS_PATH]["post"]["requestBody"]["content"]
    assert {"$ref": "#/components/schemas/MemberEvent"} in body["application/json"]["schema"]["oneOf"]
    assert body["application/x-ndjson"]["schema"] == {"$ref": "#/components/schemas/MemberEvent"}
    assert document["paths"][EVENTS_PATH]["post"]["security"] == [{"source": [], "timestamp": [], "signature": []}]
    assert schemas["SubmissionResult"]["properties"].keys() >= {"accepted", "duplicate", "rejected", "results"}


def test_without_secrets_the_app_refuses_unless_insecure(pool):
    with pytest.raises(ValueError, match="GOLDENROUTE_INGRESS_SECRETS"):
        create_app(Settings(), pool, None, None)
    assert create_app(Settings(), pool, None, None, insecure=True)


async def test_insecure_mode_takes_unsigned_requests(pool):
    async with client_for(create_app(Settings(), pool, None, None, insecure=True)) as http:
        m = member()
        response = await http.post(EVENTS_PATH, json=event(m))
        assert response.status_code == 200 and await logged(pool, m) == 1


def test_secrets_come_from_the_environment_and_never_show():
    settings = Settings.from_env({"GOLDENROUTE_INGRESS_SECRETS": "ec-cube=abc123, shopify = xyz789"})
    assert {k: v.get_secret_value() for k, v in settings.ingress_secrets.items()} == {
        "ec-cube": "abc123", "shopify": "xyz789"}
    assert "abc123" not in repr(settings) and "xyz789" not in str(settings.model_dump())


def test_problem_fields_for_metrics_are_the_contracts_own():
    assert {"occurred_at", "lines", "contact", "(event)"} <= EVENT_FIELDS
