"""The baselines' trivial workflow: it only waits on signals (deterministic code only: runs in the sandbox)."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn
class NoopWorkflow:
    """Counts ``event`` signals; completes after ``expected`` of them (0: waits for ever)."""

    def __init__(self) -> None:
        self._received = 0

    @workflow.signal
    def event(self, payload: dict) -> None:
        self._received += 1

    @workflow.run
    async def run(self, expected: int) -> int:
        await workflow.wait_condition(lambda: 0 < expected <= self._received)
        return self._received
