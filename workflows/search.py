"""The custom search attributes operators filter members by in the Temporal Web UI."""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from workflows.lifecycle import MemberState

LIFECYCLE_STAGE = SearchAttributeKey.for_keyword("LifecycleStage")
SUBSCRIPTION_STATUS = SearchAttributeKey.for_keyword("SubscriptionStatus")
PURCHASE_COUNT = SearchAttributeKey.for_int("PurchaseCount")
NEXT_TOUCH_AT = SearchAttributeKey.for_datetime("NextTouchAt")

ALL = (LIFECYCLE_STAGE, SUBSCRIPTION_STATUS, PURCHASE_COUNT, NEXT_TOUCH_AT)

# Names as the Temporal CLI's `--search-attribute NAME=TYPE` flag spells them.
CLI_TYPES = {
    LIFECYCLE_STAGE.name: "Keyword",
    SUBSCRIPTION_STATUS.name: "Keyword",
    PURCHASE_COUNT.name: "Int",
    NEXT_TOUCH_AT.name: "Datetime",
}


def values_of(state: MemberState, next_touch_at: datetime | None = None) -> dict[str, object]:
    """The member's search attributes, name -> value (None: unset)."""
    return {
        LIFECYCLE_STAGE.name: state.stage.value,
        SUBSCRIPTION_STATUS.name: state.subscription_status.value,
        PURCHASE_COUNT.name: state.purchase_count,
        NEXT_TOUCH_AT.name: next_touch_at,
    }


def typed(values: dict[str, object]) -> TypedSearchAttributes:
    """``values_of``'s values as a workflow start or continue-as-new takes them."""
    return TypedSearchAttributes([SearchAttributePair(key, values[key.name]) for key in ALL
                                  if values[key.name] is not None])
