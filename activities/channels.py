"""Channel adapters: where a sent touch's rendered message goes.

Every adapter writes in the delivery activity's own transaction, so the touch's
record and its message commit together or not at all, and every write is
idempotent on the touch's key. The outbox (``deliveries``) holds messages to
members, which a separate relay (or the shop's MA tool) hands to the vendor;
package inserts go to the warehouse's ``inserts`` list, and call-centre tasks to
the agents' ``call_center_tasks`` queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict
from temporalio.exceptions import ApplicationError

from activities.render import RenderedMessage
from workflows.events import Channel

log = structlog.get_logger(__name__)


class OutboundMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    member_id: str
    scenario: str
    step: str
    decided_at: datetime
    order_id: str | None = None  # the order whose parcel an insert goes in
    message: RenderedMessage

    @property
    def channel(self) -> Channel:
        return self.message.channel


class ChannelAdapter(Protocol):
    async def send(self, conn: asyncpg.Connection, outbound: OutboundMessage) -> None:
        """Hand one message to the channel; must be idempotent on ``outbound.key``."""


class OutboxAdapter:
    """Messages to the member: email, LINE, SMS, push, DM."""

    async def send(self, conn: asyncpg.Connection, outbound: OutboundMessage) -> None:
        # Personal data (the recipient, a letter's address block) lives in ``body`` only,
        # which erasure replaces as a whole.
        body = outbound.message.model_dump_json(include={"subject", "body", "recipient"})
        await conn.execute(
            "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body)"
            " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (idempotency_key) DO NOTHING",
            outbound.key, outbound.member_id, outbound.channel.value, outbound.message.template, body,
        )
        log.info("delivery.outbox", key=outbound.key, member_id=outbound.member_id,
                 channel=outbound.channel.value, template=outbound.message.template)


class InsertAdapter:
    """同梱: a leaflet for the warehouse to put in the parcel of the touch's order."""

    async def send(self, conn: asyncpg.Connection, outbound: OutboundMessage) -> None:
        if not outbound.order_id:
            raise ApplicationError(
                f"{outbound.message.template}: an insert needs the order whose parcel it goes in",
                type="NoShipment", non_retryable=True,
            )
        await conn.execute(
            "INSERT INTO inserts (idempotency_key, member_id, order_id, scenario, step, insert_code, body)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING",
            outbound.key, outbound.member_id, outbound.order_id, outbound.scenario, outbound.step,
            outbound.message.insert_code, outbound.message.body,
        )
        log.info("delivery.insert", key=outbound.key, member_id=outbound.member_id,
                 order_id=outbound.order_id, insert_code=outbound.message.insert_code)


# How urgent an agent's call is: (priority, due within). A churn sign is called first and
# before the next day's FAQ follow-up reaches the member; a 60-day pause can wait a few days.
CALL_URGENCY: dict[str, tuple[int, timedelta]] = {
    "S12": (1, timedelta(days=1)),
    "S07": (2, timedelta(days=3)),
}
ORDINARY_CALL = (3, timedelta(days=7))


class CallCenterAdapter:
    """コールセンター通知: an open task in the agents' queue; the agent looks the member up by id."""

    async def send(self, conn: asyncpg.Connection, outbound: OutboundMessage) -> None:
        priority, within = CALL_URGENCY.get(outbound.scenario, ORDINARY_CALL)
        await conn.execute(
            "INSERT INTO call_center_tasks"
            " (idempotency_key, member_id, scenario, step, reason, talking_points, priority, due_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
            outbound.key, outbound.member_id, outbound.scenario, outbound.step,
            outbound.message.subject, outbound.message.body, priority, outbound.decided_at + within,
        )
        log.info("delivery.call_center", key=outbound.key, member_id=outbound.member_id, priority=priority)


def default_adapters() -> dict[Channel, ChannelAdapter]:
    """Inserts and call-centre tasks have their own tables; every other channel uses the outbox."""
    return {Channel.INSERT: InsertAdapter(), Channel.CALL_CENTER: CallCenterAdapter()}
