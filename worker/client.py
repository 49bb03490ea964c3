"""The one place that builds a Temporal client (and the quiet runtime of the preview and the benchmarks)."""

from __future__ import annotations

from temporalio.client import Client
from worker.converter import DATA_CONVERTER
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from worker.settings import Settings


_quiet: Runtime | None = None


def quiet_runtime() -> Runtime:
    """One runtime per process whose SDK core logs only errors (for preview and benchmarks,
    where the test server's notes about capabilities it lacks are noise)."""
    global _quiet
    if _quiet is None:
        _quiet = Runtime(telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))
    return _quiet


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    if not settings.temporal_address:
        raise RuntimeError(
            "TEMPORAL_ADDRESS is not set and no dev stack is running: start one with `goldenroute dev`"
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
    )


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register goldenroute's custom search attributes (the time-skipping test server starts without them)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from workflows import search

    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={key.name: int(key.indexed_value_type) for key in search.ALL},
    ))
