"""What the controller tells about each pass: metrics, the reason queued jobs wait (a note in the
job store that gateways show in `/status`), and a short history of wanted vs actual workers for
`skiff status` and the console. Only the leader runs passes, so only the leader says anything.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from skiff_controller.autoscaler import ScalingDecision
from skiff_controller.metrics import ControllerMetrics, decision_reasons
from skiff_controller.waiting import wait_reason
from skiff_core.jobs import WorkerState
from skiff_core.orchestrator.base import ReportsTrouble, Trouble, WorkerPhase
from skiff_core.spec import EndpointSpec, EndpointType
from skiff_core.waiting import NOTE_TTL_S, REFRESH_S, WaitReason, note_key

if TYPE_CHECKING:
    from skiff_controller.loop import Controller, _Worker

HISTORY_EVERY_S = 10.0
HISTORY_POINTS = 360  # an hour at HISTORY_EVERY_S
# How long gateways keep saying a removed endpoint's jobs wait because it was removed.
REMOVED_NOTE_TTL_S = 86400.0


class PassObserver:
    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self.metrics = ControllerMetrics(lambda: controller.leading)
        self._reasons: dict[str, WaitReason] = {}
        self._written: dict[str, tuple[str, float]] = {}
        self._history: dict[str, deque[tuple[float, int, int]]] = {}

    def trouble(self, endpoint: str) -> Trouble | None:
        orchestrator = self._controller.orchestrator
        return orchestrator.trouble(endpoint) if isinstance(orchestrator, ReportsTrouble) else None

    def passed(
        self,
        spec: EndpointSpec,
        asked: int,
        queued: int,
        in_flight: int,
        oldest: float,
        workers: list[_Worker],
        decision: ScalingDecision,
        now: float,
    ) -> None:
        name = spec.name
        states = [_state(w) for w in workers]
        self.metrics.observed(name, queued, in_flight, oldest, states, decision.desired, asked)
        present = [w.info.id for w in workers]
        for worker in workers:
            ready_at = worker.view.ready_at
            if ready_at is not None and worker.info.phase is not WorkerPhase.PENDING:
                self.metrics.ready(name, worker.info.id, ready_at - worker.info.launched_at, present)
        serving = sum(1 for s in states if s in ("idle", "running"))
        history = self._history.setdefault(name, deque(maxlen=HISTORY_POINTS))
        if not history or now - history[-1][0] >= HISTORY_EVERY_S:
            history.append((now, decision.desired, serving))
        if spec.type is not EndpointType.QUEUE:
            return
        reason = wait_reason(
            spec.scaling,
            [(w.view.state, w.info.phase, w.info.launched_at) for w in workers],
            self.trouble(name),
            now,
        )
        self._reasons[name] = reason
        last = self._written.get(name)
        if queued and (last is None or last[0] != reason.code or time.monotonic() - last[1] >= REFRESH_S):
            self._written[name] = (reason.code, time.monotonic())
            self._controller._spawn(
                self._controller.store.put_note(note_key(name), reason.model_dump_json(), ttl_s=NOTE_TTL_S)
            )

    def acted(
        self,
        spec: EndpointSpec,
        decision: ScalingDecision,
        start: int,
        drained: int,
        rolling: bool,
        exits: dict[str, int],
    ) -> None:
        reasons = decision_reasons(decision.reason, start, drained, rolling)
        self.metrics.acted(spec.name, reasons, start, exits)

    def worker_exited(self, endpoint: str, worker_id: str) -> None:
        """A worker ended on its own (not stopped by Skiff): crashed, or exited to be replaced."""
        trouble = self.trouble(endpoint)
        crashed = trouble is not None and trouble.worker_id == worker_id
        self.metrics.acted(endpoint, (), 0, {"crashed" if crashed else "exited": 1})

    def endpoint_removed(self, name: str) -> None:
        self.metrics.forget(name)
        self._history.pop(name, None)
        self._reasons.pop(name, None)
        self._written.pop(name, None)
        reason = WaitReason(
            code="endpoint_removed", message=f"endpoint {name!r} was removed; no worker will take it", since=time.time()
        )
        self._controller._spawn(
            self._controller.store.put_note(note_key(name), reason.model_dump_json(), ttl_s=REMOVED_NOTE_TTL_S)
        )

    def status_of(self, name: str) -> dict[str, Any]:
        """Extra fields of an endpoint in `/v1/status`."""
        trouble = self.trouble(name)
        reason = self._reasons.get(name)
        return {
            "waiting": reason.model_dump() if reason is not None else None,
            "trouble": None
            if trouble is None
            else {
                "kind": trouble.kind,
                "message": trouble.message,
                "exit_code": trouble.exit_code,
                "worker_id": trouble.worker_id,
                "restart_at": trouble.restart_at,
                "output": list(trouble.output),
            },
            "history": [
                {"at": at, "wanted": wanted, "serving": serving} for at, wanted, serving in self._history.get(name, ())
            ],
        }


def _state(worker: _Worker) -> str:
    if worker.info.phase is WorkerPhase.STOPPING:
        return "stopping"
    if worker.info.phase is WorkerPhase.EXITED:
        return "stopping"
    state: WorkerState = worker.view.state
    return state.value
