"""The custom search attributes operators filter members by in the Temporal Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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
