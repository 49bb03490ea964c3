"""Channel adapters: where a sent touch's message goes.

An adapter takes one rendered message. The outbox adapter writes it to the
``deliveries`` table in the delivery activity's own transaction, so the touch's
record and its message commit together or not at all; a separate relay (or the
shop's MA tool) reads the outbox and talks to the vendor.
"""

from __future__ import annotations

from typing import Any, Protocol

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict

from workflows.events import Channel

log = structlog.get_logger(__name__)


class OutboundMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    member_id: str
    channel: Channel
    template: str
    body: dict[str, Any]


class ChannelAdapter(Protocol):
    async def send(self, conn: asyncpg.Connection, message: OutboundMessage) -> None:
        """Hand one message to the channel; must be idempotent on ``message.key``."""


class OutboxAdapter:
    async def send(self, conn: asyncpg.Connection, message: OutboundMessage) -> None:
        await conn.execute(
            "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body)"
            " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (idempotency_key) DO NOTHING",
            message.key, message.member_id, message.channel.value, message.template,
            message.model_dump_json(include={"body"}),
        )
        log.info("delivery.outbox", key=message.key, member_id=message.member_id,
                 channel=message.channel.value, template=message.template)
