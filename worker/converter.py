"""The data converter: temporalio's pydantic JSON converter with one cache of type adapters per process.

``temporalio.contrib.pydantic``'s converter keeps an LRU cache of ``TypeAdapter``s per
converter *instance*, and the SDK makes a converter per workflow instance (and per
activation). A ``TypeAdapter`` owns a compiled pydantic-core validator — Rust memory
that ``tracemalloc`` does not see — so every cached member workflow carried its own
validators for ``MemberInput``, ``MemberEvent`` and each activity's result: most of
its memory in the worker (issue 14). Here the adapters are shared by every converter
of the process; the payloads on the wire are byte for byte the same JSON.

Every client, worker, replayer and test environment uses ``DATA_CONVERTER``.
"""

from __future__ import annotations

import functools

from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
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


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)
