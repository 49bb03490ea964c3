"""The data converter: temporalio's pydantic JSON converter with one cache of type adapters per process.

``temporalio.contrib.pydantic``'s converter keeps an LRU cache of ``TypeAdapter``s per
converter *instance*, and the SDK makes a converter per workflow instance (and per
activation). A ``TypeAdapter`` owns a compiled pydantic-core validator — Rust memory
that ``tracemalloc`` does not see — so every cached member workflow carried its own
validators for ``MemberInput``, ``MemberEvent`` and each activity's result: most of
its memory in the worker (issue 14). Here the adapters are shared by every converter
of the process; the payloads on the wire are byte for byte the same JSON.

Every client, worker, replayer and test environment uses ``DATA_CONVERTER``.

``DATA_CONVERTER`` also compresses (``ZlibCodec``): a payload that zlib makes smaller is stored
as ``binary/zlib``, the whole serialized payload (metadata and JSON) deflated. Temporal
Cloud bills an open history by the GB-hour and a member's history is open for years; the
carried state and the activities' requests are JSON that deflates to a third or less (issue
14). A payload that would not shrink is stored as it was, and every payload written before
the codec existed decodes unchanged. To read a history, decode it (``decode_history``,
``goldenroute member history``); the Web UI decodes through the ingress's codec endpoint
(``/codec``, README "Operate it").
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

from google.protobuf.message import Message
from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
)

# Type hints are the workflows' and activities' parameter and return types (a few dozen);
# the bound only matters if a sandbox re-imports a module whose types then differ per run.
MAX_ADAPTERS = 512


@functools.lru_cache(maxsize=MAX_ADAPTERS)
def _adapter(hint: object) -> TypeAdapter:
    return TypeAdapter(hint)


class _SharedAdapters(PydanticJSONPlainPayloadConverter):
    def __init__(self) -> None:
        super().__init__(max_cached_type_adapters=0)
        # The parent calls self._type_adapter(hint) and falls back to an uncached adapter
        # for an unhashable hint (lru_cache raises TypeError for those, as the parent's does).
        self._type_adapter = _adapter  # type: ignore[assignment]


class PayloadConverter(CompositePayloadConverter):
    """The SDK's default encodings, with JSON done by pydantic through the shared adapters."""

    def __init__(self) -> None:
        super().__init__(*(
            _SharedAdapters() if isinstance(c, JSONPlainPayloadConverter) else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters
        ))


ZLIB = b"binary/zlib"
# Deflate level: 6 (zlib's default) gives 97 % of level 9's saving on these payloads at a
# third of the CPU; a workflow task's payloads take tens of microseconds either way.
ZLIB_LEVEL = 6


def compress(payload: Payload) -> Payload:
    """``payload`` deflated, or ``payload`` itself if deflating would not make it smaller."""
    plain = payload.SerializeToString(deterministic=True)
    packed = zlib.compress(plain, ZLIB_LEVEL)
    wrapped = Payload(metadata={"encoding": ZLIB}, data=packed)
    return wrapped if wrapped.ByteSize() < len(plain) else payload


def decompress(payload: Payload) -> Payload:
    if payload.metadata.get("encoding") != ZLIB:
        return payload
    return Payload.FromString(zlib.decompress(payload.data))


class ZlibCodec(PayloadCodec):
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [compress(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [decompress(p) for p in payloads]


def decode_history(message: Message) -> Message:
    """Every ``binary/zlib`` payload inside ``message`` (a ``History``, an event, …) decoded, in
    place; returns ``message``. For tests, the benchmarks and the CLI, which read histories."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            children = [v for v in value.values() if isinstance(v, Message)]
        elif isinstance(value, Message):
            children = [value]
        else:
            children = list(value)
        for child in children:
            if isinstance(child, Payload):
                if child.metadata.get("encoding") == ZLIB:
                    child.CopyFrom(decompress(child))
            else:
                decode_history(child)
    return message


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter, payload_codec=ZlibCodec())
