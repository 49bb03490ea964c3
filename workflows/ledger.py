"""The touch ledger: every outcome a member's rules may still ask about, and no more.

``plan`` never plans a touch whose key has an outcome here, so a step is decided once;
``record`` adds outcomes and lets go of those no rule can ask about again, so the
carried state stays bounded whatever the member's age.
"""

from __future__ import annotations

from datetime import timedelta

from workflows import broadcasts
from workflows.lifecycle import MemberState
from workflows.rules import DEFAULT_RULES, Rules
from workflows.scenarios import TEMPLATES, Scenario
from workflows.touches import TouchRecord

# The touch ledger keeps every outcome of an entry that can still be derived (so no
# step is ever decided twice) and, beyond those, the outcomes of the last RECENT days:
# an entry that stops being derived (its order cancelled) may come back within them.
RECENT = timedelta(days=180)
MAX_LEDGER = 400  # a safety bound far above what the rules above keep
# Scenarios whose entries the shop's configuration decides (S08's N回目 and spacing): a change
# can make an old entry derivable again, so their outcomes (one per 180 days) are kept while
# the purchase that entered them is still in the state (an order folded out of the state
# derives no entry, whatever the configuration: without this the ledger grew by two S08
# outcomes a year for ever).
RULED_ENTRIES = frozenset({Scenario.S08_LOYALTY.value})


def entered_occurrences(state: MemberState, rules: Rules = DEFAULT_RULES) -> set[tuple[str, str]]:
    """(scenario, occurrence) of every entry the member's facts still derive."""
    return {(t.scenario.value, e.occurrence) for t in TEMPLATES for e in t.entries(state, rules)}


def record(state: MemberState, records: list[TouchRecord], rules: Rules = DEFAULT_RULES) -> MemberState:
    """Add touch outcomes to the ledger and let go of those no rule can ask about again."""
    if not records:
        return state
    live = entered_occurrences(state, rules)
    runs = {(b.broadcast, b.run) for b in state.live_broadcasts()}
    now = state.as_of or max(r.decided_at for r in records)

    def keeps(r: TouchRecord) -> bool:
        if broadcasts.is_broadcast(r.scenario):
            # A broadcast's outcome goes with its run (lifecycle.BROADCAST_KEEP): a newsletter
            # a week for years must not fill the ledger.
            return (r.step, r.occurrence) in runs
        return ((r.scenario, r.occurrence) in live or r.decided_at >= now - RECENT
                or (r.scenario in RULED_ENTRIES and r.occurrence in state.orders))

    kept = tuple(r for r in (*state.touches, *records) if keeps(r))
    return state.model_copy(update={"touches": kept[-MAX_LEDGER:]})
