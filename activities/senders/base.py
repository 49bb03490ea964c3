"""The one interface every vendor adapter implements, and the three ways a send can end.

``send`` returns a ``SendResult`` when the vendor accepted the message (a LINE 409
"already accepted" for the same retry key is an acceptance too), raises ``Retryable``
when trying again later may succeed (429, 5xx, a timeout, a refused connection), and
``Rejected`` when it never will (a 4xx that is not 409/429, a bad recipient). Whether
an attempt whose result is unknown may be repeated is not the sender's decision: the
delivery activity records each attempt before the call (SPEC §5, exactly once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from activities.render import RenderedMessage
from workflows.events import Channel


class SendResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor_message_id: str | None = None  # the vendor's id of the message, when it gives one
    accepted_at: datetime
    duplicate: bool = False  # the vendor had already accepted this key (LINE 409)


class Retryable(Exception):
    """Trying again later may succeed. ``retry_after``: seconds the vendor asked for, if any.

    ``maybe_delivered``: the vendor may have taken the message before the answer was lost
    (a timeout or a dropped connection after the request went out, a 5xx from a gateway).
    For a vendor without an idempotency key (SMTP, SMS) the attempt is then ``uncertain``:
    repeating it could send the message twice.
    """

    def __init__(self, reason: str, retry_after: float | None = None, maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class Rejected(Exception):
    """The vendor refused the message for good; ``reason`` is short and names the vendor's code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sender(Protocol):
    channel: Channel
    # True when the vendor deduplicates on a key the sender derives from the touch (LINE's
    # X-Line-Retry-Key, a webhook's Idempotency-Key): an interrupted attempt may be repeated.
    idempotent: bool

    async def send(self, message: RenderedMessage, key: str, member_id: str) -> SendResult:
        """Hand one rendered message for ``member_id`` to the vendor. ``key`` is the touch's
        idempotency key (member:scenario:step:occurrence); a sender that can pass an
        idempotency key to its vendor derives it from ``key``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
