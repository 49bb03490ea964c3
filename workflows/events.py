"""The order-system event contract (SPEC §2): one discriminated union on ``type``.

Models are strict (no silent coercion of ``"3"`` into ``3``) and forbid unknown
fields, so a malformed event is rejected at the edge with the field named.
``occurred_at`` must carry its offset. Deterministic code only: this module is
imported inside the workflow sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)


class Channel(StrEnum):
    EMAIL = "email"
    LINE = "line"
    SMS = "sms"
    PUSH = "push"
    DM = "dm"
    INSERT = "insert"
    CALL_CENTER = "call_center"
    WEB = "web"


# Channels a member opts into; inserts, call-centre tasks and web banners need no consent.
CONSENT_CHANNELS = (Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH, Channel.DM)


class SalesChannel(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class LineRole(StrEnum):
    MAIN = "main"
    CROSS = "cross"
    TRIAL = "trial"


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# Ids and short codes: at most 128 characters, no control characters (NUL, newlines, …).
NonEmpty = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_SUPPLY_DAYS = 3650
Days = Annotated[int, Field(gt=0, le=MAX_SUPPLY_DAYS)]
EARLIEST, LATEST = 2000, 2100


class _Event(_Model):
    event_id: NonEmpty
    member_id: NonEmpty
    occurred_at: AwareDatetime

    @field_validator("occurred_at")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        # Timers run years past an event; keep their arithmetic inside the calendar.
        if not EARLIEST <= value.year <= LATEST:
            raise ValueError(f"must be between {EARLIEST} and {LATEST}")
        return value


class Consent(_Model):
    """Opt-in per channel. A channel left out (or ``null``) keeps its current consent:
    a registration that only changes an address must not opt the member out."""

    email: bool | None = None
    line: bool | None = None
    sms: bool | None = None
    push: bool | None = None
    dm: bool | None = None

    def given(self) -> dict[str, bool]:
        """The channels this update names explicitly, with their new value."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


# An address may hold line breaks (a postal address) but never NUL.
Address = Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")]


class Contact(_Model):
    """Personal data: stored by the ingress in PostgreSQL, never signalled to a workflow.

    Partial: a field left out keeps the stored address; an explicit ``null`` (or
    ``""``) removes it, and routing falls back to the next channel (SPEC §2, §5).
    """

    email: Address | None = None
    phone: Address | None = None
    line_user_id: Address | None = None
    postal_address: Address | None = None
    push_token: Address | None = None

    def changes(self) -> dict[str, str | None]:
        """The fields this update names: a value to store, or None to remove the address."""
        return {name: (getattr(self, name) or None) for name in self.model_fields_set}


class Reach(_Model):
    """Whether the stored contact reaches a channel, and the registration that last set its field."""

    reachable: bool
    at: AwareDatetime
    event_id: Annotated[str, Field(max_length=128)]


class MemberRegistered(_Event):
    """Creates the member or updates its profile, partially: what is left out stays as it is."""

    type: Literal["member_registered"]
    sales_channel: SalesChannel | None = None  # None: unchanged (``online`` for a new member)
    consent: Consent | None = None
    contact: Contact | None = None
    # Set by the ingress from the stored contact data: which channels can reach the member.
    # None: unchanged (the registration named no address).
    reachable: frozenset[Channel] | None = None
    # Set by the ingress with ``reachable``: per channel, the stamp of the registration that
    # last set its contact field, so the workflow folds reachability last-writer-wins per
    # channel, as member_contacts does, and converges in any delivery order.
    reach: dict[Channel, Reach] | None = None
    timezone: str | None = None  # None: unchanged (``Asia/Tokyo`` for a new member)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        # Only IANA names ("Asia/Tokyo"); "localtime" or a path is a file, not a zone.
        if len(value) > 64 or not value[:1].isalpha() or value in {"localtime", "posixrules", "Factory"}:
            raise ValueError(f"unknown IANA timezone {value[:64]!r}")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class SampleRequested(_Event):
    type: Literal["sample_requested"]
    order_id: NonEmpty
    sku: NonEmpty
    days_supply: Days


class OrderLine(_Model):
    sku: NonEmpty
    role: LineRole
    quantity: Annotated[int, Field(gt=0, le=1000)] = 1
    days_supply: Days
    unit_price: Annotated[int, Field(ge=0, le=100_000_000)] = 0

    @model_validator(mode="after")
    def _supply_within_ten_years(self) -> "OrderLine":
        if self.quantity * self.days_supply > MAX_SUPPLY_DAYS:
            raise ValueError(f"quantity × days_supply must be at most {MAX_SUPPLY_DAYS} days")
        return self


class OrderPlaced(_Event):
    type: Literal["order_placed"]
    order_id: NonEmpty
    lines: Annotated[tuple[OrderLine, ...], Field(min_length=1, max_length=100)]
    sales_channel: SalesChannel = SalesChannel.ONLINE
    subscription_id: NonEmpty | None = None


class OrderShipped(_Event):
    type: Literal["order_shipped"]
    order_id: NonEmpty


class OrderCancelled(_Event):
    type: Literal["order_cancelled"]
    order_id: NonEmpty


class SubscriptionStarted(_Event):
    type: Literal["subscription_started"]
    subscription_id: NonEmpty
    sku: NonEmpty
    interval_days: Days


class SubscriptionPaused(_Event):
    type: Literal["subscription_paused"]
    subscription_id: NonEmpty


class SubscriptionResumed(_Event):
    type: Literal["subscription_resumed"]
    subscription_id: NonEmpty


class SubscriptionCancelled(_Event):
    type: Literal["subscription_cancelled"]
    subscription_id: NonEmpty


class SubscriptionIntervalChanged(_Event):
    type: Literal["subscription_interval_changed"]
    subscription_id: NonEmpty
    interval_days: Days


class ChurnSignal(_Event):
    type: Literal["churn_signal"]
    signal: NonEmpty


class ConsentChanged(_Event):
    type: Literal["consent_changed"]
    channel: Literal["email", "line", "sms", "push", "dm"]
    granted: bool


class MemberErased(_Event):
    type: Literal["member_erased"]


BroadcastName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
RunId = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z_.:-]{0,47}$")]


class BroadcastRequested(_Event):
    """goldenroute's own event, written by a broadcast (``workflows.broadcast``), not by a
    cart: one member's share of a run of a broadcast (the weekly メルマガ, a campaign).
    The member's own workflow decides the touch under its own policy (SPEC §5), at the
    lowest priority. The event id is ``bc:{broadcast}:{run}:{member_id}``: a run reaches
    a member once however often a crashed page is accepted again."""

    type: Literal["broadcast_requested"]
    broadcast: BroadcastName
    run: RunId
    template: BroadcastName
    # The channel the copy is written for; None: routed like any scenario's step.
    channel: Literal["email", "line", "sms", "push", "dm"] | None = None
    holdout_percent: Annotated[int, Field(ge=0, le=50)] | None = None  # None: the policy's


MemberEvent = Annotated[
    Union[
        MemberRegistered,
        SampleRequested,
        OrderPlaced,
        OrderShipped,
        OrderCancelled,
        SubscriptionStarted,
        SubscriptionPaused,
        SubscriptionResumed,
        SubscriptionCancelled,
        SubscriptionIntervalChanged,
        ChurnSignal,
        ConsentChanged,
        MemberErased,
        BroadcastRequested,
    ],
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[MemberEvent] = TypeAdapter(MemberEvent)


class InvalidEvent(ValueError):
    """An event that breaks the contract; ``problems`` names each field and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_event(raw: str | bytes | dict) -> MemberEvent:
    """Validate one event from JSON text or a decoded JSON object."""
    try:
        if isinstance(raw, dict):
            # Decoded JSON still holds ISO strings for datetimes: validate in JSON mode.
            return EVENT_ADAPTER.validate_json(_dumps(raw))
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(_describe_all(error.errors())) from None


def _describe_all(errors: list) -> list[str]:
    # A list whose item failed also reports itself as "too short"; the item's error says it all.
    deeper = [tuple(e["loc"]) for e in errors]
    return [
        _describe(e) for e in errors
        if not (e["type"] == "too_short" and any(
            len(loc) > len(e["loc"]) and loc[: len(e["loc"])] == tuple(e["loc"]) for loc in deeper))
    ]


def _describe(error: dict) -> str:
    # loc starts with the union tag (the event type); drop it so the path reads like the JSON.
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    if error["type"].startswith("union_tag"):
        loc = ["type"]
    return f"{'.'.join(loc) or '(event)'}: {error['msg']}"


def _dumps(raw: dict) -> str:
    return json.dumps(raw, ensure_ascii=False)


EVENT_TYPES = frozenset(
    model.model_fields["type"].annotation.__args__[0]
    for model in MemberEvent.__origin__.__args__  # type: ignore[attr-defined]
)
