"""The delivery activity: record each touch's outcome once, and send the sent ones once.

A sent touch is rendered here, from the member's contact row read in the same
transaction: addresses never travel through the workflow. If the message cannot
be rendered (no address on the channel, e.g. the contact was erased meanwhile,
or no template), the activity fails non-retryably and its transaction rolls
back, so neither the touch nor a message is recorded. The workflow then records
the touch in its own history as ``suppressed: delivery_failed``; the ``touches``
table has no row for it.

A message to a member on a channel with a sender (LINE, SMTP, an SMS gateway, a
webhook: ``activities.senders``) leaves in three steps, so the network call holds no
transaction and no lock: (1) the touch, the rendered message (``deliveries``, state
``queued``) and the attempt (``sending``, attempts + 1) are committed; (2) the sender
calls the vendor; (3) the result is committed: ``sent`` with the vendor's id,
``failed`` (the vendor refused it for good: the touch becomes
``suppressed: delivery_failed``), or back to ``queued`` for a retry. An attempt that
finds the previous one still ``sending`` (a worker killed mid-call) repeats it only
for a vendor that deduplicates (LINE by ``X-Line-Retry-Key``, a webhook by
``Idempotency-Key``): SMTP and SMS have no such key, so the delivery is ``uncertain``
for an operator, and so is one whose answer was lost after the request went out
(``Retryable.maybe_delivered``). A channel without a sender keeps today's outbox: the
message waits ``queued`` for the shop's own relay.

The message is the shop's as it was configured when the touch was decided: the
request names that configuration version, and its profile, catalogue and templates
render it. A version this worker has not read yet is a retryable failure (the
worker's copy of the versions catches up); a touch decided before any configuration
(version 0 or none) takes the newest, and the built-in example shop when there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Protocol

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.projection import project
from activities.channels import ChannelAdapter, OutboundMessage, OutboxAdapter, default_adapters
from activities.contacts import FIELDS
from activities.render import RenderError, render
from activities.senders.base import Rejected, Retryable, Sender
from workflows.events import Channel
from worker import metrics
from workflows.events import Contact
from workflows.messages import DeliveryRequest, DeliveryResult, OutcomeBatch, OutcomeBatchResult
from workflows.shop import ShopConfig
from workflows.touches import Outcome

log = structlog.get_logger(__name__)

_RECORD = """
INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, variant,
                     outcome, reason, planned_at, decided_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (idempotency_key) DO UPDATE SET outcome = EXCLUDED.outcome, reason = EXCLUDED.reason
    -- A send the vendor refused for good, after its touch was committed as sent: suppressed.
    WHERE touches.outcome = 'sent' AND touches.delivered_at IS NULL AND EXCLUDED.reason LIKE 'delivery_failed:%'
RETURNING 1
"""

# FOR SHARE: an erasure waits for this send to commit, and then redacts it too;
# a send that starts after an erasure began sees no contact at all.
_CONTACT = f"SELECT {', '.join(FIELDS)} FROM member_contacts WHERE member_id = $1 FOR SHARE"


_RECORD_MANY = """
INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, variant,
                     outcome, reason, planned_at, decided_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[])
ON CONFLICT (idempotency_key) DO NOTHING
"""


def _record_args(request: DeliveryRequest) -> tuple:
    return (request.key, request.member_id, request.scenario, request.step, request.occurrence,
            request.channel.value if request.channel else None, request.variant, request.outcome.value,
            request.reason, request.due_at, request.decided_at)


class ShopVersion(Protocol):
    """One applied version of the shop's configuration (activities.shop_versions.ShopVersion)."""

    @property
    def config(self) -> ShopConfig: ...

    @property
    def templates(self) -> Mapping[str, str]: ...


class ShopVersions(Protocol):
    """The versions a worker has read (activities.shop_versions.ShopVersions)."""

    def get(self, number: int) -> ShopVersion | None: ...

    def latest(self) -> ShopVersion | None: ...


class DeliveryActivities:
    def __init__(self, pool: asyncpg.Pool, adapters: dict | None = None, shops: ShopVersions | None = None,
                 senders: Mapping[Channel, Sender] | None = None,
                 unsubscribe: Callable[[str, str], str] | None = None) -> None:
        self._pool = pool
        # (member_id, channel) → the member's signed unsubscribe link on the HTTP ingress, if reachable.
        self._unsubscribe = unsubscribe
        # Per channel, the vendor adapter that sends; a channel without one stays in the outbox.
        self._senders: Mapping[Channel, Sender] = senders or {}
        # None: no configuration read, the built-in example shop.
        self._shops = shops
        self._adapters: dict = {**default_adapters(), **(adapters or {})}
        self._default: ChannelAdapter = OutboxAdapter()

    @activity.defn(name="deliver_touch")
    async def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Exactly once per idempotency key, however often it is retried or replayed."""
        with metrics.timed("deliver_touch"):
            try:
                result = await self._deliver(request)
            except Exception:
                if request.outcome is Outcome.SENT and request.channel is not None:
                    metrics.delivery(request.channel.value, "failed")
                raise
        if result.recorded:  # committed, and inserted by this attempt: a retry records nothing
            metrics.touches_recorded([(request.scenario, request.outcome.value)])
        return result

    async def _deliver(self, request: DeliveryRequest) -> DeliveryResult:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                if request.projection is not None:  # the member's read model rides along, in the same commit
                    await project(conn, request.projection)
                recorded = await conn.fetchval(_RECORD, *_record_args(request)) is not None
                if request.outcome is not Outcome.SENT or request.channel is None:
                    return DeliveryResult(key=request.key, recorded=recorded, sent=False)
                # The row lock makes a concurrent attempt with the same key wait, then see it sent.
                delivered_at = await conn.fetchval(
                    "SELECT delivered_at FROM touches WHERE idempotency_key = $1 FOR UPDATE", request.key
                )
                if delivered_at is not None:
                    log.info("delivery.duplicate", key=request.key)
                    metrics.delivery(request.channel.value, "duplicate")
                    return DeliveryResult(key=request.key, recorded=recorded, sent=True, delivered_at=delivered_at)
                shop, templates = self._shop(request)
                outbound = await self._outbound(conn, request, shop, templates)
                sender = self._sender(request, shop)
                if sender is None:  # a file or queue in PostgreSQL (insert, call centre, DM) or the outbox
                    adapter = self._adapters.get(request.channel, self._default)
                    await adapter.send(conn, outbound)
                    delivered_at = datetime.now(timezone.utc)
                    await conn.execute("UPDATE touches SET delivered_at = $2 WHERE idempotency_key = $1",
                                       request.key, delivered_at)
                    metrics.delivery(request.channel.value, "sent")
                    return DeliveryResult(key=request.key, recorded=recorded, sent=True, delivered_at=delivered_at)
                go = await _begin_attempt(conn, outbound, idempotent=getattr(sender, "idempotent", False))
            if go is not None:
                state, error = go
                if state == "failed":  # refused for good by an earlier attempt whose failure was lost
                    raise ApplicationError(f"{outbound.message.template}: {error}", type=_kind(error or "vendor"),
                                           non_retryable=True)
                return DeliveryResult(key=request.key, recorded=recorded, sent=state == "sent")
        # The pooled connection goes back before the vendor is called: a hanging vendor must
        # not hold the pool other channels (and the member workflows' records) need.
        return await self._send(sender, outbound, recorded)

    def _sender(self, request: DeliveryRequest, shop: ShopConfig | None) -> Sender | None:
        assert request.channel is not None
        sender = self._senders.get(request.channel)
        if sender is not None and hasattr(sender, "for_shop"):  # e.g. SMTP: From is the shop's sender
            sender = sender.for_shop(shop)
        return sender

    async def _send(self, sender: Sender, outbound: OutboundMessage, recorded: bool) -> DeliveryResult:
        """The vendor call, outside any transaction; then its result, committed."""
        key, channel = outbound.key, outbound.channel.value
        try:
            result = await sender.send(outbound.message, key, outbound.member_id)
        except Rejected as refused:
            await self._end(key, "failed", error=refused.reason)  # counted by deliver()
            raise ApplicationError(f"{outbound.message.template} on {channel}: {refused.reason}",
                                   type=_kind(refused.reason), non_retryable=True) from None
        except Retryable as lost:
            if lost.maybe_delivered and not getattr(sender, "idempotent", False):
                await self._end(key, "uncertain", error=lost.reason)
                metrics.delivery(channel, "uncertain")
                log.warning("delivery.uncertain", key=key, member_id=outbound.member_id, reason=lost.reason)
                return DeliveryResult(key=key, recorded=recorded, sent=False)
            await self._end(key, "queued", error=lost.reason)
            delay = timedelta(seconds=lost.retry_after) if lost.retry_after else None
            raise ApplicationError(f"{outbound.message.template} on {channel}: {lost.reason}",
                                   type="DeliveryRetry", next_retry_delay=delay) from None
        delivered_at = datetime.now(timezone.utc)
        async with self._pool.acquire() as conn, conn.transaction():
            await _end_attempt(conn, key, "sent", vendor_message_id=result.vendor_message_id)
            await conn.execute("UPDATE touches SET delivered_at = $2 WHERE idempotency_key = $1", key, delivered_at)
        metrics.delivery(channel, "duplicate" if result.duplicate else "sent")
        log.info("delivery.sent", key=key, member_id=outbound.member_id, channel=channel,
                 vendor_message_id=result.vendor_message_id, duplicate=result.duplicate)
        return DeliveryResult(key=key, recorded=recorded, sent=True, delivered_at=delivered_at)

    async def _end(self, key: str, state: str, *, error: str | None = None) -> None:
        async with self._pool.acquire() as conn:
            await _end_attempt(conn, key, state, error=error)

    @activity.defn(name="record_outcomes")
    async def record_outcomes(self, batch: OutcomeBatch) -> OutcomeBatchResult:
        """Every touch of a wake-up that is not sent, and the member's projection, in one transaction."""
        with metrics.timed("record_outcomes"):
            async with self._pool.acquire() as conn, conn.transaction():
                if batch.projection is not None:
                    await project(conn, batch.projection)
                # RETURNING: the touches this attempt inserted, for the metrics (a retry inserts none).
                inserted = await conn.fetch(_RECORD_MANY + " RETURNING scenario, outcome",
                                            *(list(c) for c in zip(*map(_record_args, batch.touches))))\
                    if batch.touches else []
        metrics.touches_recorded((row["scenario"], row["outcome"]) for row in inserted)  # committed
        return OutcomeBatchResult(recorded=len(inserted))

    def _shop(self, request: DeliveryRequest) -> tuple[ShopConfig | None, Mapping[str, str] | None]:
        """The configuration and templates of the version the touch was decided under. A worker
        built without the shop's versions (a test, a preview) renders with the example shop."""
        if self._shops is None:
            return None, None
        if not request.config_version:
            version = self._shops.latest() if self._shops is not None else None
        else:
            version = self._shops.get(request.config_version) if self._shops is not None else None
            if version is None:
                log.warning("delivery.unknown_config_version", key=request.key, version=request.config_version)
                # Retryable: another worker applied or read it first; this one's copy catches up.
                raise ApplicationError(f"{request.scenario}.{request.step}: configuration version "
                                       f"{request.config_version} is not known to this worker yet",
                                       type="UnknownConfigVersion")
        return (version.config, version.templates) if version is not None else (None, None)

    async def _outbound(self, conn: asyncpg.Connection, request: DeliveryRequest, shop: ShopConfig | None,
                        templates: Mapping[str, str] | None) -> OutboundMessage:
        row = await conn.fetchrow(_CONTACT, request.member_id)
        try:
            link = (self._unsubscribe(request.member_id, request.channel.value)
                    if self._unsubscribe and request.channel is Channel.EMAIL else None)
            message = render(request, Contact(**dict(row)) if row else None, shop, templates, link)
        except RenderError as error:
            # Raising inside the transaction rolls back the touch recorded above.
            log.warning("delivery.unrenderable", key=request.key, member_id=request.member_id,
                        problem=type(error).__name__)
            raise ApplicationError(str(error), type=type(error).__name__, non_retryable=True) from error
        return OutboundMessage(
            key=request.key, member_id=request.member_id, scenario=request.scenario, step=request.step,
            decided_at=request.decided_at, order_id=request.context.get("order_id"), message=message,
        )


async def _begin_attempt(conn: asyncpg.Connection, outbound: OutboundMessage,
                         idempotent: bool) -> tuple[str, str | None] | None:
    """Store the message (once) and mark an attempt; None: go ahead and call the vendor, else
    the state that ends this attempt without a call (sent, failed, uncertain)."""
    body = outbound.message.model_dump_json(include={"subject", "body", "recipient"})
    await conn.execute(
        "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body)"
        " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (idempotency_key) DO NOTHING",
        outbound.key, outbound.member_id, outbound.channel.value, outbound.message.template, body)
    row = await conn.fetchrow("SELECT state, last_error FROM deliveries WHERE idempotency_key = $1 FOR UPDATE",
                              outbound.key)
    state = row["state"]
    if state in ("sent", "failed", "uncertain"):
        return state, row["last_error"]
    if state == "sending" and not idempotent:
        # The previous attempt called the vendor and never recorded what came back (a worker
        # killed mid-call): SMTP and SMS cannot tell, so it is not repeated blindly.
        await _end_attempt(conn, outbound.key, "uncertain", error="attempt_interrupted")
        metrics.delivery(outbound.channel.value, "uncertain")
        log.warning("delivery.uncertain", key=outbound.key, member_id=outbound.member_id,
                    reason="attempt_interrupted")
        return "uncertain", "attempt_interrupted"
    await conn.execute(
        "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, attempted_at = now(), updated_at = now()"
        " WHERE idempotency_key = $1", outbound.key)
    return None


async def _end_attempt(conn: asyncpg.Connection, key: str, state: str, *, error: str | None = None,
                       vendor_message_id: str | None = None) -> None:
    await conn.execute(
        "UPDATE deliveries SET state = $2, last_error = coalesce($3, last_error),"
        " vendor_message_id = coalesce($4, vendor_message_id),"
        " sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END, updated_at = now()"
        " WHERE idempotency_key = $1", key, state, error, vendor_message_id)


def _kind(reason: str) -> str:
    """``line:400:…`` → ``line_400``: the kind the workflow names in ``delivery_failed:…``."""
    vendor, _, rest = reason.partition(":")
    return f"{vendor}_{rest.partition(':')[0]}" if rest else vendor
