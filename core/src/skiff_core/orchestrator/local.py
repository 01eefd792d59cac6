"""Workers as local processes (the embedded orchestrator).

Each worker runs the endpoint's `command` from the project directory, in its own process group
(so its children go with it), with PR_SET_PDEATHSIG so a killed `skiff up` takes its workers
along. Output goes straight to <state_dir>/logs/<endpoint>/<worker>.log (no pipe through us).
Crashed workers are replaced with exponential backoff; a worker that exits cleanly after a job
asked for it (refresh_worker / stopPod) is replaced at once, and so is one the controller asks
to `replace` (one that sent stopPod and stays up, as the runpod SDK's does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiff_core.orchestrator.base import LogLine, Trouble, WorkerExit, WorkerInfo, WorkerPhase
from skiff_core.orchestrator.worker_env import worker_environment
from skiff_core.outages import log_failure
from skiff_core.secrets_file import secret_env
from skiff_core.spec import EndpointSpec, EndpointType, volume_env

log = logging.getLogger("skiff.orchestrator")

MAX_BACKOFF_S = 30.0
HEALTHY_RUN_S = 60.0  # a worker that ran this long resets its endpoint's crash backoff
OUTPUT_TAIL_LINES = 20  # lines of a crashed worker's output kept for `skiff status` and /status
_PR_SET_PDEATHSIG = 1

LaunchHook = Callable[[str, str, float, float], None]  # worker, endpoint, launched_at, started_at
ExitHook = Callable[[str, str, WorkerExit], Awaitable[None]]
StoppingHook = Callable[[str, str], None]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Worker:
    id: str
    spec: EndpointSpec
    process: asyncio.subprocess.Process
    launched_at: float
    started_at: float
    log_path: Path
    port: int | None = None
    health_port: int | None = None
    stopping: bool = False
    monitor: asyncio.Task[None] | None = None


@dataclass
class _Endpoint:
    spec: EndpointSpec
    desired: int = 0
    workers: dict[str, _Worker] = field(default_factory=dict)
    crashes: int = 0
    restart_at: float = 0.0
    pending: int = 0  # launches under way, not yet in `workers`
    last_crash: Trouble | None = None

    def alive(self) -> int:
        return self.pending + sum(1 for w in self.workers.values() if not w.stopping)


class LocalOrchestrator:
    def __init__(
        self,
        *,
        gateway_url: str,
        worker_key: Callable[[str], str],
        state_dir: Path,
        project_dir: Path,
        ping_interval_s: float = 10.0,
        stop_grace_s: float = 10.0,
        on_launch: LaunchHook | None = None,
        on_exit: ExitHook | None = None,
        on_stopping: StoppingHook | None = None,
    ) -> None:
        self._gateway_url = gateway_url
        self._worker_key = worker_key
        self._log_dir = state_dir / "logs"
        self._volume_dir = state_dir / "volumes"
        self._state_dir = state_dir
        self._project_dir = project_dir
        self._ping_interval_s = ping_interval_s
        self._stop_grace_s = stop_grace_s
        self._hurried = False
        self._on_launch = on_launch
        self._on_exit = on_exit
        self._on_stopping = on_stopping
        self._endpoints: dict[str, _Endpoint] = {}
        self._lock = asyncio.Lock()
        self._restarter: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ Orchestrator protocol
    async def apply(self, spec: EndpointSpec) -> None:
        async with self._lock:
            current = self._endpoints.get(spec.name)
            if current is None:
                self._endpoints[spec.name] = _Endpoint(spec)
            else:
                current.spec = spec

    async def remove(self, endpoint: str) -> None:
        async with self._lock:
            state = self._endpoints.pop(endpoint, None)
        if state is not None:
            await asyncio.gather(*(self._stop(w) for w in list(state.workers.values())))

    async def scale(self, endpoint: str, count: int, *, stop: Sequence[str] = (), kill: Sequence[str] = ()) -> None:
        async with self._lock:
            state = self._endpoints.get(endpoint)
            if state is None:
                raise KeyError(f"endpoint {endpoint!r} was not applied")
            state.desired = max(0, count)
            running = [w for w in state.workers.values() if not w.stopping]
            excess = state.alive() - state.desired
            victims: list[_Worker] = []
            if excess > 0:
                named = [w for w in running if w.id in stop or w.id in kill]
                others = sorted((w for w in running if w not in named), key=lambda w: w.launched_at, reverse=True)
                victims = (named + others)[:excess]
            # While a crash backoff runs, the restart it scheduled tops the count up: launching
            # here too would turn a crash loop into a fork loop.
            if time.time() >= state.restart_at:
                for _ in range(-excess):
                    self._launch(state)
        await asyncio.gather(*(self._stop(w, grace=0 if w.id in kill else None) for w in victims))

    async def stop_worker(self, endpoint: str, worker_id: str) -> None:
        """Stop one worker and lower the desired count by one (drain-aware scale-down)."""
        async with self._lock:
            state = self._endpoints.get(endpoint)
            worker = state.workers.get(worker_id) if state else None
            if state is None or worker is None or worker.stopping:
                return
            state.desired = max(0, state.desired - 1)
        await self._stop(worker)

    async def replace(self, endpoint: str, worker_id: str) -> None:
        async with self._lock:
            state = self._endpoints.get(endpoint)
            worker = state.workers.get(worker_id) if state else None
            if state is None or worker is None or worker.stopping:
                return
            worker.stopping = True
            # The fresh one starts while the old one finishes its stop grace.
            for _ in range(state.desired - state.alive()):
                self._launch(state)
        log.info("replacing worker %s of %s, as it asked after its job", worker_id, endpoint)
        await self._stop(worker)

    async def workers(self, endpoint: str) -> list[WorkerInfo]:
        state = self._endpoints.get(endpoint)
        if state is None:
            return []
        return [
            WorkerInfo(
                id=w.id,
                endpoint=endpoint,
                phase=WorkerPhase.STOPPING if w.stopping else WorkerPhase.RUNNING,
                launched_at=w.launched_at,
                spec_hash=w.spec.spec_hash(),
                address=f"127.0.0.1:{w.port}" if w.port else None,
                health_address=f"127.0.0.1:{w.health_port}" if w.health_port else None,
                started_at=w.started_at,
            )
            for w in state.workers.values()
        ]

    def trouble(self, endpoint: str) -> Trouble | None:
        """The endpoint's crash loop: its last crash while the crash count (reset by a worker that
        runs HEALTHY_RUN_S) is above zero, with the backoff's end."""
        state = self._endpoints.get(endpoint)
        if state is None or state.crashes == 0 or state.last_crash is None:
            return None
        crash = state.last_crash
        return Trouble(
            crash.kind,
            crash.message,
            crash.at,
            exit_code=crash.exit_code,
            restart_at=state.restart_at,
            worker_id=crash.worker_id,
            output=crash.output,
        )

    async def close(self) -> None:
        if self._restarter is not None:
            self._restarter.cancel()
        async with self._lock:
            everyone = [w for s in self._endpoints.values() for w in s.workers.values()]
            for state in self._endpoints.values():
                state.desired = 0
        await asyncio.gather(*(self._stop(w) for w in everyone))

    def hurry(self) -> None:
        self._hurried = True  # and any stop that starts from now on
        for state in self._endpoints.values():
            for worker in state.workers.values():
                if worker.stopping and worker.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(worker.process.pid, signal.SIGKILL)

    async def worker_logs(
        self, endpoint: str, *, worker: str | None = None, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """Lines of <state_dir>/logs/<endpoint>/<worker>.log (stdout and stderr in one file),
        oldest worker first; files of workers that started later join while following."""
        directory = self._log_dir / endpoint
        if not follow and not directory.is_dir():
            raise FileNotFoundError(f"no logs for endpoint {endpoint!r} under {self._log_dir}")
        handles: dict[Path, Any] = {}
        try:
            while True:
                paths = sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
                for path in paths:
                    if worker is not None and not path.stem.startswith(worker):
                        continue
                    if path not in handles:
                        handles[path] = path.open("rb")
                    for raw in handles[path].readlines():
                        yield LogLine(path.stem, "output", raw.decode(errors="replace").rstrip("\n"))
                if not follow:
                    return
                await asyncio.sleep(0.3)
        finally:
            for handle in handles.values():
                handle.close()

    # ------------------------------------------------------------ internals
    def log_path(self, endpoint: str, worker_id: str) -> Path:
        return self._log_dir / endpoint / f"{worker_id}.log"

    def _argv(self, spec: EndpointSpec) -> list[str]:
        if spec.command is None:
            raise ValueError(f"endpoint {spec.name!r} has no `command`: the embedded mode runs commands, not images")
        argv = list(spec.command)
        # "python" means the interpreter Skiff runs on, so the worker sees the same packages
        # whether or not the virtualenv is on PATH.
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        elif shutil.which(argv[0], path=os.environ.get("PATH")) is None and not Path(argv[0]).exists():
            raise FileNotFoundError(f"endpoint {spec.name!r}: command {argv[0]!r} not found on PATH")
        return argv

    def volume_dir(self, spec: EndpointSpec, label: str) -> Path:
        """A local process cannot mount: volume `label` is a directory, `local_path` (relative to
        the project directory) or <state_dir>/volumes/<source>, shared by every endpoint naming
        that source as Nomad host volumes are shared by the jobs on a node."""
        volume = spec.volume[label]
        if volume.local_path is not None:
            return (self._project_dir / volume.local_path).resolve()
        return (self._volume_dir / volume.source).resolve()

    def _volumes(self, spec: EndpointSpec) -> dict[str, str]:
        env = {}
        for label in spec.volume:
            directory = self.volume_dir(spec, label)
            directory.mkdir(parents=True, exist_ok=True)
            env[volume_env(label)] = str(directory)
        return env

    def _launch(self, state: _Endpoint) -> None:
        spec = state.spec
        worker_id = f"{spec.name}-{uuid.uuid4().hex[:8]}"
        env = {**os.environ}
        env.update(
            worker_environment(
                spec,
                gateway_url=self._gateway_url,
                worker_key=self._worker_key(spec.name),
                worker_id=worker_id,
                ping_interval_s=self._ping_interval_s,
            )
        )
        try:
            env.update(self._volumes(spec))
        except OSError as exc:
            log.error("endpoint %s: cannot prepare its volumes: %s", spec.name, exc)
        port = health_port = None
        if spec.type is EndpointType.LOAD_BALANCER:
            port, health_port = _free_port(), _free_port()
            env["PORT"], env["PORT_HEALTH"] = str(port), str(health_port)
        log_path = self.log_path(spec.name, worker_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        launched_at = time.time()
        state.pending += 1
        task = asyncio.get_running_loop().create_task(
            self._spawn(state, worker_id, env, log_path, launched_at, port, health_port)
        )
        task.add_done_callback(_log_failure)

    async def _spawn(
        self,
        state: _Endpoint,
        worker_id: str,
        env: dict[str, str],
        log_path: Path,
        launched_at: float,
        port: int | None,
        health_port: int | None,
    ) -> None:
        spec = state.spec
        try:
            process = await self._start_process(spec, env, log_path)
        except (OSError, ValueError) as exc:
            log.error("endpoint %s: could not start a worker: %s", spec.name, exc)
            state.crashes += 1
            self._schedule_restart(state)
            return
        finally:
            # In the same step that lists the worker below (not in a done callback, a loop
            # iteration later): in between, alive() would count the new worker twice and a
            # scale() landing there would launch one too few.
            state.pending -= 1
        worker = _Worker(worker_id, spec, process, launched_at, time.time(), log_path, port, health_port)
        state.workers[worker_id] = worker
        if self._on_launch is not None:
            self._on_launch(worker_id, spec.name, launched_at, worker.started_at)
        worker.monitor = asyncio.get_running_loop().create_task(self._watch(state, worker))

    async def _start_process(self, spec: EndpointSpec, env: dict[str, str], log_path: Path) -> Process:
        with log_path.open("ab") as out:
            try:
                # Read at each start, so `skiff secrets set` reaches the next worker.
                env.update(secret_env(self._state_dir, spec.name, spec.secrets, dict(os.environ)))
                return await asyncio.create_subprocess_exec(
                    *self._argv(spec),
                    cwd=self._project_dir,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except (OSError, ValueError) as exc:
                out.write(f"skiff: could not start worker: {exc}\n".encode())
                raise

    async def _watch(self, state: _Endpoint, worker: _Worker) -> None:
        code = await worker.process.wait()
        state.workers.pop(worker.id, None)
        # A crashed worker's children live on otherwise (the runpod SDK's ping process would keep
        # reporting the dead worker as busy): the whole process group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        if worker.stopping:
            return
        ran = time.time() - worker.launched_at
        output = _tail(worker.log_path, OUTPUT_TAIL_LINES)
        if code == 0:
            log.info("worker %s of %s exited after its job asked to be replaced", worker.id, state.spec.name)
        else:
            state.crashes = 0 if ran > HEALTHY_RUN_S else state.crashes + 1
            state.last_crash = Trouble(
                "crash_loop",
                f"worker {worker.id} exited with code {code} after {ran:.1f}s",
                time.time(),
                exit_code=code,
                worker_id=worker.id,
                output=output,
            )
            log.warning("worker %s of %s exited with code %s; replacing it", worker.id, state.spec.name, code)
        if self._on_exit is not None:
            await self._on_exit(worker.id, state.spec.name, WorkerExit(code, output))
        self._schedule_restart(state)

    def _schedule_restart(self, state: _Endpoint) -> None:
        delay = 0.0 if state.crashes == 0 else min(MAX_BACKOFF_S, 0.5 * 2 ** (state.crashes - 1))
        state.restart_at = time.time() + delay
        task = asyncio.get_running_loop().create_task(self._top_up_later(state, delay))
        task.add_done_callback(_log_failure)

    async def _top_up_later(self, state: _Endpoint, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._endpoints.get(state.spec.name) is not state:
                return
            for _ in range(state.desired - state.alive()):
                self._launch(state)

    async def _stop(self, worker: _Worker, grace: float | None = None) -> None:
        """SIGTERM the worker's process group (the runpod SDK finishes its job and exits), then
        SIGKILL after the grace period (the orchestrator's, unless given; 0 kills at once)."""
        worker.stopping = True
        process = worker.process
        grace = 0 if self._hurried else self._stop_grace_s if grace is None else grace
        if process.returncode is None and grace > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            if self._on_stopping is not None:
                # After the signal, so the worker's next look at its flag finds it set.
                self._on_stopping(worker.id, worker.spec.name)
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        # Reap stragglers the worker left in its group (e.g. the runpod SDK's ping process).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if worker.monitor is not None:
            await asyncio.gather(worker.monitor, return_exceptions=True)


def _tail(path: Path, lines: int) -> tuple[str, ...]:
    """The last `lines` lines of a worker's log (read from its last 16 KiB)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ()
    return tuple(text.splitlines()[-lines:])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_failure(task: asyncio.Task[None]) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log_failure(log, error, "orchestrator task failed")
