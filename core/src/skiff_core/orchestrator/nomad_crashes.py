"""A crash loop read from Nomad's allocations: each task's TaskState (api/tasks.go) keeps its
events, and Nomad's task runner (client/allocrunner/taskrunner/task_runner.go) emits a
"Terminated" event with the ExitCode when the task exits, then "Restarting" (with StartDelay, the
restart policy's delay: the backoff) or "Not Restarting" (the allocation fails and is
rescheduled) as client/allocrunner/taskrunner/restarts/restarts.go decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A worker that has run this long since its last crash ends the crash loop (the local
# orchestrator's HEALTHY_RUN_S).
HEALTHY_RUN_S = 60.0


@dataclass(frozen=True, slots=True)
class Crash:
    alloc_id: str
    exit_code: int
    at: float  # when the task exited
    restarts: int  # TaskState.Restarts: in-place restarts of this allocation so far
    restart_at: float | None  # when Nomad starts the task again ("Restarting" Time + StartDelay)
    reason: str  # the restart decision's DisplayMessage (or RestartReason)

    def message(self) -> str:
        text = f"worker {self.alloc_id} exited with code {self.exit_code}"
        if self.restarts:
            text += f" (restarted {self.restarts} time(s) by Nomad)"
        return f"{text}; Nomad: {self.reason}" if self.reason else text


def latest_crash(allocs: list[dict[str, Any]], task: str, now: float) -> Crash | None:
    """The last non-zero exit among the allocations Nomad still wants running, unless the task
    has run for HEALTHY_RUN_S since (or a later allocation already runs that long)."""
    best: Crash | None = None
    for alloc in allocs:
        if alloc.get("DesiredStatus") != "run":
            continue  # stopped by Skiff (or replaced): its exit is no crash
        state = (alloc.get("TaskStates") or {}).get(task) or {}
        events: list[dict[str, Any]] = list(state.get("Events") or [])
        for i in range(len(events) - 1, -1, -1):
            event = events[i]
            if event.get("Type") == "Started" and now - int(event.get("Time") or 0) / 1e9 > HEALTHY_RUN_S:
                break  # it has been up long enough since any earlier crash
            if event.get("Type") != "Terminated" or not int(event.get("ExitCode") or 0):
                continue
            after = events[i + 1] if i + 1 < len(events) else {}
            restart_at = None
            if after.get("Type") == "Restarting":
                restart_at = (int(after.get("Time") or 0) + int(after.get("StartDelay") or 0)) / 1e9
            reason = str(after.get("DisplayMessage") or after.get("RestartReason") or "")
            crash = Crash(
                alloc_id=str(alloc.get("ID")),
                exit_code=int(event.get("ExitCode") or 0),
                at=int(event.get("Time") or 0) / 1e9,
                restarts=int(state.get("Restarts") or 0),
                restart_at=restart_at,
                reason=reason,
            )
            if best is None or crash.at > best.at:
                best = crash
            break
    return best
