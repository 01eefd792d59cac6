"""The orchestrator on Nomad: one service job per endpoint, workers are the group's allocations.

Scale-down is drain-aware. Lowering a group's `Count` lets Nomad's scheduler pick which
allocations to stop, and it picks by name index: `computeStop` stops the allocations whose
`<job>.<group>[N]` names have the highest N (scheduler/reconciler/reconcile_cluster.go,
`nameIndex.Highest(remove)`), after lost / migrating / canary ones. So the controller asks
`stop_candidates(endpoint, count)` which workers a lower count will stop, marks exactly those
draining so the gateway hands them no new job, and calls `scale(endpoint, count, stop=those)` once
they are idle. `scale` refuses (DrainMismatch) when Nomad would stop a worker the controller did
not name, so a busy worker is never stopped by a count change.

With `deferred_stops=True` (what skiff_core.backends builds for the controller, whose autoscaler picks
idle workers without knowing name indexes) a mismatch is not an error: the named workers that
Nomad cannot stop yet are kept as "retiring" (drained, listed as STOPPING so the controller
neither counts nor re-stops them), the group's Count includes them, and each later `scale` first
drops every retiring allocation that has reached the top of the name indexes. Count is never
lowered past an allocation that was not named, so a busy worker is never stopped; the price is
that a drained, idle low-index worker can linger until the ones above it are drained too.

The endpoint's worker key lives in the Nomad Variable `nomad/jobs/<job id>` (skiff_core.nomad.render
explains why): `apply` writes it before registering the job, whose template blocks until it
exists, and only when it differs; `remove` deletes it after the job is gone.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from skiff_core.config import Settings
from skiff_core.nomad.client import NomadClient, NomadError
from skiff_core.nomad.render import (
    GROUP_NAME,
    TASK_NAME,
    WORKER_KEY_ITEM,
    RenderOptions,
    job_id,
    render_job,
    worker_key_variable,
)
from skiff_core.orchestrator.base import WorkerInfo, WorkerPhase
from skiff_core.spec import EndpointSpec

_NAME_INDEX = re.compile(r"\[(\d+)\]$")
_TERMINAL = frozenset({"complete", "failed", "lost"})
_EVAL_DONE = frozenset({"complete", "failed", "blocked", "canceled"})


class PlacementFailed(NomadError):
    """Nomad's scheduler found no node for some of an endpoint's workers."""


class DrainMismatch(NomadError):
    """Lowering the count would stop a worker that was not drained first."""

    def __init__(self, message: str, would_stop: list[str]) -> None:
        super().__init__(message)
        self.would_stop = would_stop


def alloc_index(alloc: dict[str, Any]) -> int:
    match = _NAME_INDEX.search(str(alloc.get("Name", "")))
    return int(match.group(1)) if match else -1


def is_live(alloc: dict[str, Any]) -> bool:
    return alloc.get("DesiredStatus") == "run" and alloc.get("ClientStatus") not in _TERMINAL


def describe_placement_failure(endpoint: str, spec: EndpointSpec | None, failed: dict[str, Any]) -> str:
    """Nomad's AllocationMetric (api/allocations.go) in the words of `nomad job status`."""
    lines = [f"Nomad could not place workers of endpoint {endpoint!r}:"]
    for group, metric in failed.items():
        metric = metric or {}
        missing = int(metric.get("CoalescedFailures") or 0) + 1
        lines.append(f"  task group {group!r}: {missing} allocation(s) unplaced")
        if metric.get("NodesEvaluated") == 0:
            lines.append("    no client nodes were available (check datacenters / node pool)")
        for reason, count in (metric.get("ConstraintFiltered") or {}).items():
            lines.append(f"    constraint {reason!r} filtered {count} node(s)")
        for reason, count in (metric.get("ClassFiltered") or {}).items():
            lines.append(f"    class {reason!r} filtered {count} node(s)")
        for dim, count in (metric.get("DimensionExhausted") or {}).items():
            lines.append(f"    resources exhausted: {dim!r} on {count} node(s)")
    if spec is not None and spec.gpu is not None and spec.gpu.count > 0:
        models = ", ".join(spec.gpu.models) or "any model"
        lines.append(
            f"  the endpoint asks for {spec.gpu.count} x nvidia/gpu ({models}); no client offers it. "
            "Check that GPU clients run the nomad-device-nvidia plugin and report one of these models "
            "(`nomad node status -verbose <node>` lists device names)."
        )
    return "\n".join(lines)


class NomadOrchestrator:
    def __init__(
        self,
        settings: Settings,
        *,
        worker_key: Callable[[str], str],
        client: NomadClient | None = None,
        render_options: RenderOptions | None = None,
        eval_wait_s: float = 5.0,
        deferred_stops: bool = False,
    ) -> None:
        self._settings = settings
        self._client = client or NomadClient(
            settings.nomad_addr,
            token=settings.nomad_token,
            namespace=settings.nomad_namespace,
            region=settings.nomad_region,
            ca_cert=settings.nomad_cacert,
            client_cert=settings.nomad_client_cert,
            client_key=settings.nomad_client_key,
        )
        self._options = render_options or RenderOptions()
        self._worker_key = worker_key
        self._eval_wait_s = eval_wait_s
        self._specs: dict[str, EndpointSpec] = {}
        self._deferred = deferred_stops
        self._retiring: dict[str, set[str]] = {}
        self._scale_lock = asyncio.Lock()

    @property
    def client(self) -> NomadClient:
        return self._client

    def render(self, spec: EndpointSpec) -> dict[str, Any]:
        return render_job(spec, self._settings, self._options)

    async def apply(self, spec: EndpointSpec) -> None:
        body = self.render(spec)  # first: an endpoint that cannot be rendered changes nothing
        # Before the job: its tasks' template waits for the variable and starts them with the key.
        await self._client.set_variable_item(
            worker_key_variable(spec.name), WORKER_KEY_ITEM, self._worker_key(spec.name)
        )
        # PreserveCounts: re-rendering must not reset the count the autoscaler set.
        response = await self._client.register(body, preserve_counts=True)
        self._specs[spec.name] = spec
        await self._check_placement(spec.name, str(response.get("EvalID") or ""))

    async def remove(self, endpoint: str) -> None:
        await self._client.deregister(job_id(endpoint), purge=True)
        # After the job: its running tasks keep their environment while they stop.
        await self._client.remove_variable_item(worker_key_variable(endpoint), WORKER_KEY_ITEM)
        self._specs.pop(endpoint, None)
        self._retiring.pop(endpoint, None)

    async def stop_candidates(self, endpoint: str, count: int) -> list[str]:
        """The allocations Nomad stops when the group's count drops to `count`: the highest name
        indexes among the live ones (see the module docstring)."""
        live = [a for a in await self._client.allocations(job_id(endpoint)) if is_live(a)]
        excess = len(live) - count
        if excess <= 0:
            return []
        live.sort(key=alloc_index, reverse=True)
        return [str(a["ID"]) for a in live[:excess]]

    async def scale(self, endpoint: str, count: int, *, stop: Sequence[str] = (), kill: Sequence[str] = ()) -> None:
        if count < 0:
            raise ValueError("count must be >= 0")
        # Nomad stops an allocation only through its task's kill_timeout: no faster kill to ask for.
        stop = [*stop, *kill]
        if self._deferred:
            async with self._scale_lock:
                await self._scale_deferred(endpoint, count, stop)
            return
        if stop:
            would_stop = await self.stop_candidates(endpoint, count)
            unexpected = [a for a in would_stop if a not in set(stop)]
            if unexpected:
                raise DrainMismatch(
                    f"lowering {endpoint!r} to {count} would stop {unexpected}, which were not "
                    "drained; drain the workers stop_candidates() names first",
                    would_stop,
                )
        message = f"skiff: scale {endpoint} to {count}"
        if stop:
            message += f" (stopping drained {', '.join(s[:8] for s in stop)})"
        response = await self._client.scale(job_id(endpoint), GROUP_NAME, count, message)
        await self._check_placement(endpoint, str(response.get("EvalID") or ""))

    async def _scale_deferred(self, endpoint: str, count: int, stop: Sequence[str]) -> None:
        live = [a for a in await self._client.allocations(job_id(endpoint)) if is_live(a)]
        live.sort(key=alloc_index, reverse=True)
        ids = [str(a["ID"]) for a in live]
        retiring = (self._retiring.get(endpoint, set()) | set(stop)) & set(ids)
        keep = len(ids) - len(retiring)
        if count < keep:
            # Lower than the workers nobody named: Nomad would stop some of them, busy or not.
            raise DrainMismatch(
                f"lowering {endpoint!r} to {count} would stop workers that were not drained", ids[: keep - count]
            )
        top = 0  # retiring allocations at the top of the name indexes: a lower Count stops exactly those
        while top < len(ids) and ids[top] in retiring:
            top += 1
        if top:
            message = (
                f"skiff: scale {endpoint} to {len(ids) - top} (stopping drained {', '.join(i[:8] for i in ids[:top])})"
            )
            response = await self._client.scale(job_id(endpoint), GROUP_NAME, len(ids) - top, message)
            await self._check_placement(endpoint, str(response.get("EvalID") or ""))
            retiring -= set(ids[:top])
        self._retiring[endpoint] = retiring
        # The lingering retiring ones keep their slots: Count covers them and the workers asked for.
        total = count + len(retiring)
        if total != len(ids) - top or not top:
            message = f"skiff: scale {endpoint} to {count}"
            if retiring:
                message += f" (+{len(retiring)} drained, waiting for higher-index workers to drain)"
            response = await self._client.scale(job_id(endpoint), GROUP_NAME, total, message)
            await self._check_placement(endpoint, str(response.get("EvalID") or ""))

    async def _check_placement(self, endpoint: str, eval_id: str) -> None:
        if not eval_id:
            return
        deadline = time.monotonic() + self._eval_wait_s
        evaluation = await self._client.evaluation(eval_id)
        while evaluation.get("Status") not in _EVAL_DONE and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            evaluation = await self._client.evaluation(eval_id)
        failed = evaluation.get("FailedTGAllocs")
        if failed:
            raise PlacementFailed(describe_placement_failure(endpoint, self._specs.get(endpoint), failed))

    def _to_worker(self, endpoint: str, alloc: dict[str, Any], current: tuple[int, str] | None) -> WorkerInfo:
        client_status = alloc.get("ClientStatus")
        if client_status in _TERMINAL:
            phase = WorkerPhase.EXITED
        elif alloc.get("DesiredStatus") != "run" or alloc.get("ID") in self._retiring.get(endpoint, ()):
            phase = WorkerPhase.STOPPING
        elif client_status == "running":
            phase = WorkerPhase.RUNNING
        else:
            phase = WorkerPhase.PENDING
        spec_hash = ""
        if current is not None and alloc.get("JobVersion") == current[0]:
            spec_hash = current[1]
        task_state = (alloc.get("TaskStates") or {}).get(TASK_NAME) or {}
        return WorkerInfo(
            id=str(alloc["ID"]),
            endpoint=endpoint,
            phase=phase,
            launched_at=int(alloc.get("CreateTime") or 0) / 1e9,
            spec_hash=spec_hash,
            restarts=int(task_state.get("Restarts") or 0),
        )

    async def _current_version(self, endpoint: str) -> tuple[int, str] | None:
        job = await self._client.get_job(job_id(endpoint))
        if job is None:
            return None
        return int(job.get("Version") or 0), str((job.get("Meta") or {}).get("spec_hash", ""))

    def _visible(self, alloc: dict[str, Any]) -> bool:
        # An allocation Nomad was told to stop and that has stopped is history, not a worker.
        return not (alloc.get("DesiredStatus") != "run" and alloc.get("ClientStatus") in _TERMINAL)

    async def workers(self, endpoint: str) -> list[WorkerInfo]:
        current = await self._current_version(endpoint)
        allocs = await self._client.allocations(job_id(endpoint))
        return [self._to_worker(endpoint, a, current) for a in allocs if self._visible(a)]

    async def watch_workers(
        self, endpoint: str, *, index: int = 0, wait_s: float = 30.0
    ) -> tuple[list[WorkerInfo], int]:
        """Blocking query on the job's allocations: returns when they change (or after wait_s)
        with the index to pass next time."""
        allocs, new_index = await self._client.watch_allocations(job_id(endpoint), index=index, wait_s=wait_s)
        current = await self._current_version(endpoint)
        return [self._to_worker(endpoint, a, current) for a in allocs if self._visible(a)], new_index

    async def close(self) -> None:
        await self._client.close()

    def hurry(self) -> None:
        """Nomad stops allocations on its own clock (kill_timeout); nothing to hurry here."""
