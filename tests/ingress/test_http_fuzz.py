"""Fuzzed submissions: valid events mutated the ways senders break them, never a 5xx.

Hypothesis takes each kind of event, valid, and mutates it: a field dropped, given
the wrong type, a huge string, a NUL or a control character, a nested array, a
made-up field; or replaces the item with a JSON value that is no object. Every
batch goes through the real app into PostgreSQL. Whatever comes in, the answer is
never a 5xx, every rejection names its field, and a rejected event is never logged.
"""

from __future__ import annotations

import copy
import json
import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starter.ingress.http import create_app
from starter.ingress.metrics import problem_field
from tests.ingress.test_http import EVENTS_PATH, PROBLEM, SECRET, SOURCE, client_for, signed
from worker.settings import Settings
from workflows.events import parse_event

RUN = uuid.uuid4().hex[:8]
# `make faults` raises this to 1,800 batches (~10,000 events) and prints the counts.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
TRIED = {"batches": 0, "events": 0, "rejected": 0, "5xx": 0}
SETTINGS = Settings(ingress_secrets={SOURCE: SECRET})  # the default limits: 1 MiB, 1,000 events
MADE_UP = ("zzz", "payload", "備考")
AT = "2026-04-01T12:00:00+09:00"
TEMPLATES = [
    {"type": "member_registered", "sales_channel": "online", "timezone": "Asia/Tokyo",
     "consent": {"email": True, "line": False}, "contact": {"email": "a@example.jp", "postal_address": "東京都"}},
    {"type": "sample_requested", "order_id": "s1", "sku": "KOSO-SAMPLE", "days_supply": 7},
    {"type": "order_placed", "order_id": "o1", "subscription_id": "sub1",
     "lines": [{"sku": "KOSO-30", "role": "main", "quantity": 1, "days_supply": 30, "unit_price": 3980}]},
    {"type": "order_shipped", "order_id": "o1"},
    {"type": "order_cancelled", "order_id": "o1"},
    {"type": "subscription_started", "subscription_id": "sub1", "sku": "KOSO-30", "interval_days": 30},
    {"type": "subscription_paused", "subscription_id": "sub1"},
    {"type": "subscription_interval_changed", "subscription_id": "sub1", "interval_days": 45},
    {"type": "churn_signal", "signal": "cancel_page_viewed"},
    {"type": "consent_changed", "channel": "email", "granted": False},
]
WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.just("\x00"), st.just("a\x07b"), st.just("x" * 20_000), st.just(10 ** 30),
    st.just([[[["deep"]]]]), st.just({"nested": {"object": [1, {"x": None}]}}), st.just("2026-13-45T99:00:00Z"),
)


@st.composite
def items(draw) -> object:
    if draw(st.integers(0, 9)) == 0:  # not an object at all
        return draw(st.one_of(WEIRD, st.lists(WEIRD, max_size=3)))
    item = {**copy.deepcopy(draw(st.sampled_from(TEMPLATES))),
            "event_id": f"{RUN}-e{draw(st.integers(0, 60))}", "member_id": f"{RUN}-m{draw(st.integers(0, 5))}",
            "occurred_at": AT}
    for _ in range(draw(st.integers(0, 3))):
        target = item
        if isinstance(item.get("lines"), list) and item["lines"] and draw(st.booleans()):
            target = item["lines"][0] if isinstance(item["lines"][0], dict) else item
        key = draw(st.sampled_from(sorted(target)))
        mutation = draw(st.sampled_from(["drop", "replace", "extra", "nul", "huge"]))
        if mutation == "drop":
            target.pop(key)
        elif mutation == "replace":
            target[key] = draw(WEIRD)
        elif mutation == "extra":
            target[draw(st.sampled_from(MADE_UP))] = draw(WEIRD)
        elif isinstance(target[key], str):
            target[key] = target[key] + ("\x00" if mutation == "nul" else "y" * 20_000)
    return item


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield TRIED
    print(f"\nfuzz: {TRIED['events']} events in {TRIED['batches']} batches; "
          f"{TRIED['rejected']} rejected, each naming its field; {TRIED['5xx']} responses 5xx")


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(items(), min_size=1, max_size=25), ndjson=st.booleans())
async def test_fuzzed_events_never_get_a_5xx_and_every_rejection_names_its_field(pool, batch, ndjson):
    if ndjson and len(batch) == 1 and isinstance(batch[0], list):
        # One NDJSON line that is itself a JSON array is byte for byte a JSON array body:
        # the ingress reads it as the array it is (its items numbered, an empty one refused).
        batch, ndjson = batch[0] or [{}], False
    body = (b"\n".join(json.dumps(i).encode() for i in batch) if ndjson else json.dumps(batch).encode())
    async with client_for(create_app(SETTINGS, pool, None, None)) as http:
        response = await http.post(EVENTS_PATH, content=body, headers=signed(body))
    TRIED["batches"] += 1
    TRIED["events"] += len(batch)
    TRIED["5xx"] += response.status_code >= 500
    assert response.status_code < 500, response.text
    if response.status_code == 413:
        return
    assert response.status_code in (200, 422), response.text
    results = response.json()["results"]
    assert [r["number"] for r in results] == list(range(1, len(batch) + 1))
    for result in results:
        if result["status"] == "rejected":
            TRIED["rejected"] += 1
            assert result["problems"], result
            for problem in result["problems"]:
                assert PROBLEM.match(problem), problem
                assert problem_field(problem) != "(unknown)" or problem.split(":", 1)[0] in MADE_UP, problem
    # What is logged is what the forwarder signals: nothing invalid may be there.
    ids = [i["event_id"] for i in batch
           if isinstance(i, dict) and isinstance(i.get("event_id"), str) and "\x00" not in i["event_id"]]
    for row in await pool.fetch("SELECT payload::text FROM member_events WHERE event_id = ANY($1::text[])", ids):
        parse_event(row["payload"])


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.binary(min_size=1, max_size=2_000) | st.text(min_size=1).map(str.encode))
async def test_arbitrary_bytes_never_get_a_5xx(pool, body):
    async with client_for(create_app(SETTINGS, pool, None, None)) as http:
        response = await http.post(EVENTS_PATH, content=body, headers=signed(body))
    assert response.status_code in (200, 400, 422), response.text
    for result in response.json().get("results", []):
        assert result["status"] != "rejected" or all(PROBLEM.match(p) for p in result["problems"]), result
