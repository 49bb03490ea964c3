"""The delivery activity: record each touch's outcome once, and send the sent ones once."""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
import structlog
from temporalio import activity

from activities.channels import ChannelAdapter, OutboundMessage, OutboxAdapter
from workflows.messages import DeliveryRequest, DeliveryResult
from workflows.touches import Outcome

log = structlog.get_logger(__name__)

_RECORD = """
INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, variant,
                     outcome, reason, planned_at, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING 1
"""


class DeliveryActivities:
    def __init__(self, pool: asyncpg.Pool, adapters: dict | None = None) -> None:
        self._pool = pool
        self._adapters: dict = adapters or {}
        self._default: ChannelAdapter = OutboxAdapter()

    @activity.defn(name="deliver_touch")
    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Exactly once per idempotency key, however often it is retried or replayed."""
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await conn.fetchval(
                _RECORD, request.key, request.member_id, request.scenario, request.step,
                request.occurrence, request.channel.value if request.channel else None,
                request.variant, request.outcome.value, request.reason, request.due_at,
                request.decided_at,
            ) is not None
            if request.outcome is not Outcome.SENT or request.channel is None:
                return DeliveryResult(key=request.key, recorded=recorded, sent=False)
            # The row lock makes a concurrent attempt with the same key wait, then see it sent.
            delivered_at = await conn.fetchval(
                "SELECT delivered_at FROM touches WHERE idempotency_key = $1 FOR UPDATE", request.key
            )
            if delivered_at is not None:
                log.info("delivery.duplicate", key=request.key)
                return DeliveryResult(key=request.key, recorded=recorded, sent=True, delivered_at=delivered_at)
            adapter = self._adapters.get(request.channel, self._default)
            await adapter.send(conn, _message(request))
            delivered_at = datetime.now(timezone.utc)
            await conn.execute(
                "UPDATE touches SET delivered_at = $2 WHERE idempotency_key = $1", request.key, delivered_at
            )
        return DeliveryResult(key=request.key, recorded=recorded, sent=True, delivered_at=delivered_at)


def _message(request: DeliveryRequest) -> OutboundMessage:
    assert request.channel is not None
    return OutboundMessage(
        key=request.key,
        member_id=request.member_id,
        channel=request.channel,
        template=f"{request.scenario}.{request.step}",
        body={"scenario": request.scenario, "step": request.step, "variant": request.variant,
              "context": request.context},
    )
