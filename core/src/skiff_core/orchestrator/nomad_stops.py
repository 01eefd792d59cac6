"""Which allocations Nomad stops when a group's Count is lowered: a transcription of the
reconciler's choice, kept apart from the orchestrator so it can be read against Nomad's source.

Read at v1.9.7 (scheduler/reconcile.go computeGroup and computeStop, reconcile_util.go
filterByTainted and filterByRescheduleable) and 2.0.x HEAD (scheduler/reconciler/
reconcile_cluster.go, filters.go), which differ in one place noted below. For a service job:
- allocations Nomad ignores: desired stop/evict, client complete/lost, and failed ones already
  replaced (NextAllocation set);
- a failed allocation not yet replaced is either waiting for its delayed reschedule (then it is
  *untainted*: it counts and holds its name) or due now (*reschedule now*: it only holds its
  name); which one depends on its reschedule tracker and the clock, so both are considered;
- allocations the node drainer marked (DesiredTransition.Migrate) are *migrating*;
- remove = untainted that are not disconnected (client status unknown) + migrating - Count;
- migrating allocations are stopped first, the highest of their name indexes;
- then untainted allocations whose names are among the `remove` highest indexes of the name
  index (untainted + migrating + reschedule now); v1.9.7 drops terminal allocations from the
  candidates first (filterByTerminal), 2.0.x only server-terminal ones (filterByServerTerminal),
  so there a failed allocation can be the one "stopped";
- whatever is still missing is taken from the remaining candidates in Go map order: any of them.

`possible_stops` returns every outcome; the orchestrator lowers Count only when every outcome
stops drained workers alone. Lost allocations (down nodes) and canaries do not occur in the
states Skiff can see or creates (no deployments).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_NAME_INDEX = re.compile(r"\[(\d+)\]$")
# More failed allocations than this and the outcomes are not enumerated: Count is not lowered.
_MAX_AMBIGUOUS = 6


def alloc_index(alloc: dict[str, Any]) -> int:
    match = _NAME_INDEX.search(str(alloc.get("Name", "")))
    return int(match.group(1)) if match else -1


@dataclass(frozen=True)
class Outcome:
    """`sure` are stopped; besides them, `arbitrary` of the `pool` are (any of them)."""

    sure: frozenset[str]
    pool: frozenset[str] = frozenset()
    arbitrary: int = 0

    @property
    def could_stop(self) -> frozenset[str]:
        return self.sure | (self.pool if self.arbitrary else frozenset())


def _ignored(alloc: dict[str, Any]) -> bool:
    # filterByRescheduleable's NextAllocation check and shouldFilter for service jobs.
    if alloc.get("DesiredStatus") in ("stop", "evict"):
        return True
    if alloc.get("ClientStatus") in ("complete", "lost"):
        return True
    return alloc.get("ClientStatus") == "failed" and bool(alloc.get("NextAllocation"))


def _highest(indexes: Sequence[int], n: int) -> set[int]:
    return set(sorted(set(indexes), reverse=True)[:n])


def _stop(
    untainted: list[dict[str, Any]],
    migrate: list[dict[str, Any]],
    reschedule_now: list[dict[str, Any]],
    count: int,
    head: bool,
) -> Outcome:
    known = [a for a in untainted if a.get("ClientStatus") != "unknown"]
    remove = len(known) + len(migrate) - count
    if remove <= 0:
        return Outcome(frozenset())
    bitmap = [alloc_index(a) for a in (*untainted, *migrate, *reschedule_now)]
    if head:
        working = [a for a in untainted if a.get("DesiredStatus") == "run"]
    else:
        working = [a for a in untainted if a.get("ClientStatus") not in ("complete", "failed", "lost")]
    sure: set[str] = set()
    pool: set[str] = set()
    if migrate:
        names = _highest([alloc_index(a) for a in migrate], remove)
        chosen = [a for a in migrate if alloc_index(a) in names]
        if len(chosen) > remove:  # duplicate names: map order decides
            return Outcome(frozenset(), frozenset(str(a["ID"]) for a in chosen + working), remove)
        sure |= {str(a["ID"]) for a in chosen}
        remove -= len(chosen)
        bitmap = [i for i in bitmap if i not in {alloc_index(a) for a in chosen}]
        if remove == 0:
            return Outcome(frozenset(sure))
    names = _highest(bitmap, remove)
    chosen = [a for a in working if alloc_index(a) in names]
    if len(chosen) > remove:
        pool = {str(a["ID"]) for a in working}
        return Outcome(frozenset(sure), frozenset(pool), remove)
    sure |= {str(a["ID"]) for a in chosen}
    remove -= len(chosen)
    rest = [a for a in working if str(a["ID"]) not in sure]
    if remove > 0 and rest:
        if remove >= len(rest):
            sure |= {str(a["ID"]) for a in rest}
        else:
            pool = {str(a["ID"]) for a in rest}
            return Outcome(frozenset(sure), frozenset(pool), remove)
    return Outcome(frozenset(sure))


def possible_stops(allocs: Sequence[dict[str, Any]], count: int) -> list[Outcome] | None:
    """Every outcome of lowering the group's Count to `count`, over both readings of each failed
    allocation and both Nomad versions; None when there are too many to enumerate. Allocations
    may carry `DesiredTransition` (from `GET /v1/allocation/:id`); list stubs do not."""
    considered = [a for a in allocs if not _ignored(a)]
    failed = [a for a in considered if a.get("ClientStatus") == "failed"]
    if len(failed) > _MAX_AMBIGUOUS:
        return None
    others = [a for a in considered if a.get("ClientStatus") != "failed"]
    migrate = [a for a in others if (a.get("DesiredTransition") or {}).get("Migrate")]
    steady = [a for a in others if a not in migrate]
    outcomes: list[Outcome] = []
    for due in itertools.product((False, True), repeat=len(failed)):
        now = [a for a, d in zip(failed, due, strict=True) if d]
        later = [a for a, d in zip(failed, due, strict=True) if not d]
        for head in (False, True):
            outcome = _stop([*steady, *later], migrate, now, count, head)
            if outcome not in outcomes:
                outcomes.append(outcome)
    return outcomes


def could_stop(outcomes: list[Outcome] | None, allocs: Sequence[dict[str, Any]]) -> frozenset[str]:
    """Every allocation some outcome may stop (all of them when the outcomes are unknown)."""
    if outcomes is None:
        return frozenset(str(a["ID"]) for a in allocs if not _ignored(a))
    return frozenset().union(*(o.could_stop for o in outcomes))


def surely_stopped(outcomes: list[Outcome] | None) -> frozenset[str]:
    if not outcomes:
        return frozenset()
    return frozenset.intersection(*(o.sure for o in outcomes))
