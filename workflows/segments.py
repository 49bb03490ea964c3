"""Segments: named selections of members, declared as data (issue 13) — no SQL for the marketer.

A ``Segment`` is a set of criteria over the read models; a member belongs to it when
every criterion the segment names holds (one left out holds for everyone, so a
segment of no criteria is every member). Erased members belong to no segment.

- ``stage``, ``subscription_status``: any of the listed values (the members snapshot).
- ``purchase_count`` (F), ``revenue`` (累計購入金額, yen), ``days_since_last_purchase``:
  a ``{min, max}`` range, both ends inclusive, either end may be left out. Days are
  whole days elapsed since the order time of the latest main purchase (89 days and 23
  hours is 89), the clock the lifecycle's dormancy uses: 90 is dormant (SPEC §3). A
  member who never bought has no days, and matches no range of them.
- ``rfm``, ``cpm``: any of the classes the RFM and CPM reports name (``report rfm``,
  ``report cpm``), as of the moment the segment is evaluated. ``rfm`` also takes a
  cell of the report, ``R5F4`` (its ``r`` and ``f`` columns): one row of it.
- ``bought``: any of the SKUs in a non-cancelled order line (main, cross or trial;
  samples are requested, not bought); ``never_bought``: none of them.
- ``sales_channel``: ``online`` or ``offline``.
- ``reachable``, ``consented``, ``contactable``: channels, **any of** them.
  reachable = the member has an address for it; consented = opted in; contactable =
  both on the same channel, which is what routing needs (SPEC §5): a member with an
  email address who consented only to LINE is reachable and consented, not contactable.
  For "reachable by email and by LINE", a segment cannot say it; name one channel.

Deterministic, no I/O: ``workflows.shop`` (a shop file's ``[segments]``) imports it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workflows.events import SalesChannel
from workflows.facts import SubscriptionStatus
from workflows.lifecycle import Stage

SEGMENT_NAME = r"^[a-z][a-z0-9_]{0,63}$"
SegmentName = Annotated[str, Field(pattern=SEGMENT_NAME)]

# The classes as the reports name them (starter/reports/segments.py; a test keeps them equal).
RFM_SEGMENTS = ("優良", "新規", "育成", "要注意", "離脱予備", "休眠")
RFM_CELL = re.compile(r"^R([1-5])F([1-5])$")
CPM_CLASSES = ("初回客", "よちよち客", "コツコツ客", "流行客", "優良客",
               "初回離脱客", "よちよち離脱客", "コツコツ離脱客", "流行離脱客", "優良離脱客")

ContactChannel = Literal["email", "line", "sms", "push", "dm"]
# Every stage but erased: erased members belong to no segment (SPEC §2: stop everything).
SegmentStage = Literal[tuple(s.value for s in Stage if s is not Stage.ERASED)]
Sku = Annotated[str, Field(min_length=1, max_length=128)]


def _some(item: type) -> type:
    """A list of values (at least one, none twice: ``Segment._sets``)."""
    return Annotated[tuple[item, ...], Field(max_length=100)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Range(_Model):
    """``{min = 2}``, ``{max = 89}``, ``{min = 60, max = 89}``: both ends inclusive."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> "Range":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Segment(_Model):
    description: str = Field(min_length=1, max_length=300)  # what it is for, in the marketers' words
    stage: _some(SegmentStage) | None = None
    purchase_count: Range | None = None
    subscription_status: _some(SubscriptionStatus) | None = None
    rfm: _some(str) | None = None
    cpm: _some(str) | None = None
    bought: _some(Sku) | None = None
    never_bought: _some(Sku) | None = None
    days_since_last_purchase: Range | None = None
    revenue: Range | None = None
    sales_channel: SalesChannel | None = None
    reachable: _some(ContactChannel) | None = None
    consented: _some(ContactChannel) | None = None
    contactable: _some(ContactChannel) | None = None

    @field_validator("rfm")
    @classmethod
    def _rfm_classes(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in names or ():
            if name not in RFM_SEGMENTS and not RFM_CELL.match(name):
                raise ValueError(f"{name!r} is not an RFM segment ({', '.join(RFM_SEGMENTS)}) "
                                 f"nor a cell of the report such as R5F4")
        return names

    @field_validator("cpm")
    @classmethod
    def _cpm_classes(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in names or ():
            if name not in CPM_CLASSES:
                raise ValueError(f"{name!r} is not a CPM class ({', '.join(CPM_CLASSES)})")
        return names

    @field_validator("stage", "subscription_status", "rfm", "cpm", "bought", "never_bought",
                     "reachable", "consented", "contactable")
    @classmethod
    def _a_set(cls, values: tuple | None) -> tuple | None:
        if values is not None and not values:
            raise ValueError("name at least one, or leave the key out")
        if values and len(set(values)) != len(values):
            raise ValueError("a value is listed twice")
        return values

    @model_validator(mode="after")
    def _satisfiable(self) -> "Segment":
        both = set(self.bought or ()) & set(self.never_bought or ())
        if both:
            raise ValueError(f"bought and never_bought both name {', '.join(sorted(both))}: no member can match")
        return self

    def criteria(self) -> dict:
        """The criteria the segment names (JSON-ready), without its description."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"description"})


def segment_problems(name: str, segment: Segment, catalogue: Mapping[str, object]) -> list[str]:
    """SKUs a segment names that the shop's catalogue does not sell (``segments.NAME.bought: …``).

    An empty catalogue checks nothing: a shop that has not written one can still segment.
    ``catalogue`` maps SKU → ``workflows.shop.Product`` (its ``sample`` and ``ignore`` flags).
    """
    if not catalogue:
        return []
    problems = []
    for field in ("bought", "never_bought"):
        for sku in getattr(segment, field) or ():
            product = catalogue.get(sku)
            where = f"segments.{name}.{field}"
            if product is None:
                problems.append(f"{where}: {sku!r} is not in the catalogue")
            elif getattr(product, "ignore", False):
                problems.append(f"{where}: {sku!r} is ignored (ignore = true): its lines never reach the engine")
            elif getattr(product, "sample", False):
                problems.append(f"{where}: {sku!r} is a sample: samples are requested, not bought")
    return problems


def validation_problems(error: ValidationError, prefix: str) -> list[str]:
    """Each problem of ``error`` as ``prefix.field: message`` (``segments.lapsing.stage.0: …``)."""
    found = []
    for detail in error.errors():
        path = ".".join(str(p) for p in (prefix, *detail["loc"]) if p != "")
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            known = Segment.model_fields if len(detail["loc"]) == 1 else Range.model_fields
            message = f"unknown key (known: {', '.join(known)})"
        found.append(f"{path}: {message}")
    return found
