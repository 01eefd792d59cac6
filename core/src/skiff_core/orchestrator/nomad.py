"""The orchestrator on Nomad: one service job per endpoint, workers are the group's allocations.

Scale-down is drain-aware. Lowering a group's `Count` lets Nomad's scheduler pick which
allocations to stop. In the steady state it stops the highest name indexes, but not always:
migrating allocations go first, a failed allocation waiting for its delayed reschedule holds its
index and counts, and some states leave the choice to Go's map order (nomad_stops.py transcribes
the reconciler and lists every outcome). So the controller asks `stop_candidates(endpoint,
count)` which workers a lower count may stop, marks exactly those draining so the gateway hands
them no new job, and calls `scale(endpoint, count, stop=those)` once they are idle. `scale`
refuses (DrainMismatch) when Nomad could stop a worker the controller did not name, so a busy
worker is never stopped by a count change.

With `deferred_stops=True` (what skiff_core.backends builds for the controller, whose autoscaler picks
idle workers without knowing name indexes) a mismatch is not an error: the named workers that
Nomad cannot be trusted to stop yet are kept as "retiring" (drained, listed as STOPPING so the
controller neither counts nor re-stops them), the group's Count includes them, and each `scale`
lowers Count only as far as every possible outcome stops retiring workers alone. Count is never
lowered past an allocation that was not named, so a busy worker is never stopped; the price is
that a drained, idle worker can linger until Nomad's choice lands on it.

The endpoint's worker key lives in the Nomad Variable `nomad/jobs/<job id>` (skiff_core.nomad.render
explains why): `apply` writes it before registering the job, whose template blocks until it
exists, and only when it differs; `remove` deletes it after the job is gone.

With `settings.prepull`, `apply` also keeps a docker endpoint's image pre-pull job
(skiff_core.nomad.prepull) in step: registered when its image, datacenters or node pool differ
from the registered one's, so only a new image is pulled again; `remove` removes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from skiff_core.config import Settings
from skiff_core.nomad.client import NomadClient, NomadError
from skiff_core.nomad.prepull import PREPULL_META_KEY, prepull_job_id, render_prepull_job
from skiff_core.nomad.render import (
    GROUP_NAME,
    TASK_NAME,
    WORKER_KEY_ITEM,
    RenderOptions,
    job_id,
    pick_driver,
    render_job,
    worker_key_variable,
)
from skiff_core.orchestrator.base import LogLine, Trouble, WorkerInfo, WorkerPhase
from skiff_core.orchestrator.nomad_crashes import latest_crash
from skiff_core.orchestrator.nomad_stops import alloc_index, could_stop, possible_stops, surely_stopped
from skiff_core.spec import EndpointSpec

log = logging.getLogger(__name__)

_TERMINAL = frozenset({"complete", "failed", "lost"})
_EVAL_DONE = frozenset({"complete", "failed", "blocked", "canceled"})
OUTPUT_TAIL_LINES = 20  # lines of a crashed worker's stderr kept for `skiff status` and /status
_OUTPUT_TAIL_BYTES = 8192
_OUTPUT_TAIL_TIMEOUT_S = 5.0


class PlacementFailed(NomadError):
    """Nomad's scheduler found no node for some of an endpoint's workers."""


class DrainMismatch(NomadError):
    """Lowering the count would stop a worker that was not drained first."""

    def __init__(self, message: str, would_stop: list[str]) -> None:
        super().__init__(message)
        self.would_stop = would_stop


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


def task_start(task_state: dict[str, Any]) -> tuple[float | None, float | None]:
    """When the task first started and how long its image pull took, from its TaskState's Events
    (api/allocations.go: Type, Time in Unix ns, DriverMessage). Started: the "Started" event the
    task runner records once the driver started it. Pull: from the docker driver's "Downloading
    image" event (a "Driver" event, drivers/docker/driver.go pullImage; emitted only when the image
    is not on the node) to that start, so it also holds creating the container."""
    started = pulling = None
    for event in task_state.get("Events") or []:
        at = int(event.get("Time") or 0) / 1e9
        if event.get("Type") == "Started" and started is None:
            started = at
        elif event.get("Type") == "Driver" and event.get("DriverMessage") == "Downloading image" and started is None:
            pulling = pulling if pulling is not None else at
    pull = None if started is None or pulling is None else max(0.0, started - pulling)
    return started, pull


def nomad_client(settings: Settings) -> NomadClient:
    """A client for the Nomad the settings name, with their token, namespace, region and TLS."""
    return NomadClient(
        settings.nomad_addr,
        token=settings.nomad_token,
        namespace=settings.nomad_namespace,
        region=settings.nomad_region,
        ca_cert=settings.nomad_cacert,
        client_cert=settings.nomad_client_cert,
        client_key=settings.nomad_client_key,
        tls_server_name=settings.nomad_tls_server_name,
    )


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
        self._client = client or nomad_client(settings)
        self._options = render_options or RenderOptions()
        self._worker_key = worker_key
        self._eval_wait_s = eval_wait_s
        self._specs: dict[str, EndpointSpec] = {}
        self._deferred = deferred_stops
        self._retiring: dict[str, set[str]] = {}
        self._scale_lock = asyncio.Lock()
        self._placement: dict[str, Trouble] = {}
        self._crashes: dict[str, Trouble] = {}  # each endpoint's crash loop, as its allocations last showed

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
        if self._settings.prepull and pick_driver(spec, self._options) == "docker":
            await self._prepull(spec)
        await self._check_placement(spec.name, str(response.get("EvalID") or ""))

    async def _prepull(self, spec: EndpointSpec) -> None:
        """Register the endpoint's pre-pull job when what it pulls, or where, changed: an unchanged
        job would pull nothing new, and re-registering it would re-run it on every node."""
        body = render_prepull_job(spec, self._settings)
        wanted = body["Job"]
        try:
            current = await self._client.get_job(prepull_job_id(spec.name))
            if current is not None and not current.get("Stop"):
                meta = current.get("Meta") or {}
                if (
                    meta.get(PREPULL_META_KEY),
                    meta.get("image"),
                    current.get("Datacenters"),
                    current.get("NodePool"),
                ) == (
                    spec.name,
                    wanted["Meta"]["image"],
                    wanted["Datacenters"],
                    wanted.get("NodePool", current.get("NodePool")),
                ):
                    return
            await self._client.register(body, preserve_counts=False)
        except NomadError as exc:  # the endpoint itself is registered; a missed pull only costs time
            log.warning("endpoint %s: could not register its image pre-pull job: %s", spec.name, exc)

    async def remove(self, endpoint: str) -> None:
        await self._client.deregister(job_id(endpoint), purge=True)
        # After the job: its running tasks keep their environment while they stop.
        await self._client.remove_variable_item(worker_key_variable(endpoint), WORKER_KEY_ITEM)
        # Whether this controller or `skiff deploy --prepull` made it; absent: nothing to do.
        try:
            await self._client.deregister(prepull_job_id(endpoint), purge=True)
        except NomadError as exc:  # a leftover pre-pull job holds no worker: say so, go on
            log.warning("endpoint %s: could not remove its image pre-pull job: %s", endpoint, exc)
        self._specs.pop(endpoint, None)
        self._retiring.pop(endpoint, None)
        self._crashes.pop(endpoint, None)

    async def _group_allocs(self, endpoint: str) -> list[dict[str, Any]]:
        """The group's allocations, the live ones read in full: only the full Allocation says
        whether the node drainer marked it to migrate (DesiredTransition)."""
        stubs = await self._client.allocations(job_id(endpoint))
        live = [a for a in stubs if is_live(a)]
        full = await asyncio.gather(*(self._client.allocation(str(a["ID"])) for a in live))
        transitions = {str(f["ID"]): f.get("DesiredTransition") for f in full if f}
        return [dict(a, DesiredTransition=transitions.get(str(a["ID"]))) if is_live(a) else a for a in stubs]

    @staticmethod
    def _would_stop(allocs: list[dict[str, Any]], count: int) -> list[str]:
        """The live workers that lowering Count to `count` may stop, highest index first."""
        maybe = could_stop(possible_stops(allocs, count), allocs)
        live = sorted((a for a in allocs if is_live(a)), key=alloc_index, reverse=True)
        return [str(a["ID"]) for a in live if str(a["ID"]) in maybe]

    async def stop_candidates(self, endpoint: str, count: int) -> list[str]:
        """The workers Nomad may stop when the group's count drops to `count` (every outcome of
        nomad_stops.possible_stops; in the steady state the highest name indexes)."""
        return self._would_stop(await self._group_allocs(endpoint), count)

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
                    f"lowering {endpoint!r} to {count} could stop {unexpected}, which were not "
                    "drained; drain the workers stop_candidates() names first",
                    would_stop,
                )
        message = f"skiff: scale {endpoint} to {count}"
        if stop:
            message += f" (stopping drained {', '.join(s[:8] for s in stop)})"
        response = await self._client.scale(job_id(endpoint), GROUP_NAME, count, message)
        await self._check_placement(endpoint, str(response.get("EvalID") or ""))

    async def _scale_deferred(self, endpoint: str, count: int, stop: Sequence[str]) -> None:
        allocs = await self._group_allocs(endpoint)
        live = sorted((a for a in allocs if is_live(a)), key=alloc_index, reverse=True)
        ids = [str(a["ID"]) for a in live]
        retiring = (self._retiring.get(endpoint, set()) | set(stop)) & set(ids)
        keep = len(ids) - len(retiring)
        if count < keep:
            # Lower than the workers nobody named: Nomad would stop some of them, busy or not.
            raise DrainMismatch(
                f"lowering {endpoint!r} to {count} would stop workers that were not drained", ids[: keep - count]
            )

        def safe(n: int) -> tuple[bool, frozenset[str]]:
            outcomes = possible_stops(allocs, n)
            undrained = (could_stop(outcomes, allocs) & set(ids)) - retiring
            return not undrained, surely_stopped(outcomes) & retiring

        # 1. Stop as many retiring workers as a lower Count stops for sure, and nothing else.
        stopped: frozenset[str] = frozenset()
        lowered = None
        for n in range(len(allocs) - 1, -1, -1):
            ok, sure = safe(n)
            if not ok:
                break
            if len(sure) > len(stopped):
                stopped, lowered = sure, n
        if lowered is not None:
            message = f"skiff: scale {endpoint} to {lowered} (stopping drained {', '.join(i[:8] for i in stopped)})"
            response = await self._client.scale(job_id(endpoint), GROUP_NAME, lowered, message)
            await self._check_placement(endpoint, str(response.get("EvalID") or ""))
            retiring -= stopped
            allocs = [dict(a, DesiredStatus="stop") if str(a["ID"]) in stopped else a for a in allocs]
        self._retiring[endpoint] = retiring
        # 2. Count for the workers asked for plus the lingering retiring ones, no lower than
        # what stops retiring workers alone.
        total = count + len(retiring)
        while not safe(total)[0]:
            total += 1
        if total != lowered:
            message = f"skiff: scale {endpoint} to {count}"
            if retiring:
                message += f" (+{len(retiring)} drained, waiting for Nomad to be able to stop them)"
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
            message = describe_placement_failure(endpoint, self._specs.get(endpoint), failed)
            self._placement[endpoint] = Trouble("placement_failed", message, time.time())
            raise PlacementFailed(message)
        if evaluation.get("Status") in _EVAL_DONE:
            self._placement.pop(endpoint, None)

    def trouble(self, endpoint: str) -> Trouble | None:
        """The last evaluation's placement failure for the endpoint, until one places everything;
        else its crash loop as the last listing of its workers showed it."""
        return self._placement.get(endpoint) or self._crashes.get(endpoint)

    async def _note_crashes(self, endpoint: str, allocs: list[dict[str, Any]]) -> None:
        crash = latest_crash(allocs, TASK_NAME, time.time())
        if crash is None:
            self._crashes.pop(endpoint, None)
            return
        known = self._crashes.get(endpoint)
        output = (
            known.output if known is not None and (known.worker_id, known.at) == (crash.alloc_id, crash.at) else None
        )
        if output is None:
            output = await self._stderr_tail(crash.alloc_id)
        self._crashes[endpoint] = Trouble(
            "crash_loop",
            crash.message(),
            crash.at,
            exit_code=crash.exit_code,
            restart_at=crash.restart_at,
            worker_id=crash.alloc_id,
            output=output,
        )

    async def _stderr_tail(self, alloc_id: str) -> tuple[str, ...]:
        """The last lines the task wrote to stderr, read once per crash through the allocation
        logs API (origin=end: only the tail travels)."""
        data = b""
        try:
            # The servers forward the read to the allocation's client node: a control pass must
            # not hang on a node that does not answer.
            async with asyncio.timeout(_OUTPUT_TAIL_TIMEOUT_S):
                async for chunk in self._client.stream_logs(
                    alloc_id, TASK_NAME, "stderr", follow=False, origin="end", offset=_OUTPUT_TAIL_BYTES
                ):
                    data += chunk
        except NomadError as exc:
            return (f"(skiff: no stderr: {exc})",)
        except TimeoutError:
            return (f"(skiff: no stderr: its node did not answer within {_OUTPUT_TAIL_TIMEOUT_S:.0f}s)",)
        lines = data.decode(errors="replace").splitlines()
        if len(data) >= _OUTPUT_TAIL_BYTES and lines:
            lines = lines[1:]  # the first one is cut
        return tuple(lines[-OUTPUT_TAIL_LINES:])

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
        started_at, pull_s = task_start(task_state)
        return WorkerInfo(
            id=str(alloc["ID"]),
            endpoint=endpoint,
            phase=phase,
            launched_at=int(alloc.get("CreateTime") or 0) / 1e9,
            spec_hash=spec_hash,
            restarts=int(task_state.get("Restarts") or 0),
            started_at=started_at,
            pull_s=pull_s,
        )

    async def _current_version(self, endpoint: str) -> tuple[int, str] | None:
        job = await self._client.get_job(job_id(endpoint))
        if job is None:
            return None
        return int(job.get("Version") or 0), str((job.get("Meta") or {}).get("spec_hash", ""))

    def _visible(self, alloc: dict[str, Any]) -> bool:
        # An allocation Nomad was told to stop and that has stopped is history, not a worker.
        return not (alloc.get("DesiredStatus") != "run" and alloc.get("ClientStatus") in _TERMINAL)

    async def replace(self, endpoint: str, worker_id: str) -> None:
        # An allocation stop keeps the group's Count: Nomad places the replacement itself.
        await self._client.stop_allocation(worker_id)

    async def workers(self, endpoint: str) -> list[WorkerInfo]:
        current = await self._current_version(endpoint)
        allocs = await self._client.allocations(job_id(endpoint))
        await self._note_crashes(endpoint, allocs)
        return [self._to_worker(endpoint, a, current) for a in allocs if self._visible(a)]

    async def watch_workers(
        self, endpoint: str, *, index: int = 0, wait_s: float = 30.0
    ) -> tuple[list[WorkerInfo], int]:
        """Blocking query on the job's allocations: returns when they change (or after wait_s)
        with the index to pass next time."""
        allocs, new_index = await self._client.watch_allocations(job_id(endpoint), index=index, wait_s=wait_s)
        current = await self._current_version(endpoint)
        await self._note_crashes(endpoint, allocs)
        return [self._to_worker(endpoint, a, current) for a in allocs if self._visible(a)], new_index

    async def worker_logs(
        self, endpoint: str, *, worker: str | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """Each allocation's stdout and stderr through Nomad's allocation logs API, read side by
        side; while following, allocations placed later join (the job's list is re-read)."""
        lines: asyncio.Queue[LogLine | None] = asyncio.Queue()
        readers: dict[tuple[str, str], asyncio.Task[None]] = {}

        async def read(alloc_id: str, stream: str) -> None:
            pending = b""
            try:
                async for chunk in self._client.stream_logs(alloc_id, TASK_NAME, stream, follow=follow):
                    pending += chunk
                    *done, pending = pending.split(b"\n")
                    for raw in done:
                        await lines.put(LogLine(alloc_id, stream, raw.decode(errors="replace")))
            except NomadError as exc:  # not started yet, gone meanwhile: say so and go on
                await lines.put(LogLine(alloc_id, stream, f"(skiff: no {stream}: {exc})"))
            if pending:
                await lines.put(LogLine(alloc_id, stream, pending.decode(errors="replace")))

        async def discover() -> None:
            try:
                while True:
                    for alloc in await self._client.allocations(job_id(endpoint)):
                        alloc_id = str(alloc["ID"])
                        if worker is not None and not alloc_id.startswith(worker):
                            continue
                        for stream in ("stdout", "stderr"):
                            if (alloc_id, stream) not in readers:
                                readers[(alloc_id, stream)] = asyncio.create_task(read(alloc_id, stream))
                    if not follow:
                        break
                    await asyncio.sleep(2.0)
                await asyncio.gather(*readers.values())
            finally:
                await lines.put(None)  # also when listing failed: the caller sees the error

        discovering = asyncio.create_task(discover())
        try:
            while (line := await lines.get()) is not None:
                yield line
            await discovering
        finally:
            for task in [discovering, *readers.values()]:
                task.cancel()
            await asyncio.gather(discovering, *readers.values(), return_exceptions=True)

    async def close(self) -> None:
        await self._client.close()

    def hurry(self) -> None:
        """Nomad stops allocations on its own clock (kill_timeout); nothing to hurry here."""
