"""A real `skiff up` process for end-to-end tests: its own port, state dir and endpoint files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.wait import eventually

REPO = Path(__file__).resolve().parents[2]
SKIFF = str(Path(sys.executable).parent / "skiff")
TEST_KEY = "sk_test_0123456789abcdef"

# Short leases and pings so crash recovery shows up in seconds, not the production 30 s.
FAST_ENV = {
    "SKIFF_LEASE_S": "3",
    "SKIFF_PING_INTERVAL_S": "1",
    "SKIFF_WORKER_LOST_AFTER_S": "4",
    "SKIFF_TAKE_WAIT_S": "2",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def endpoint_hcl(name: str, worker: str, *, python: str = "python", **fields: Any) -> str:
    """An endpoint block running one of examples/workers/ (or tests/workers/); a queue endpoint
    unless `type` says otherwise. `python`: the interpreter named in `command` (the local
    orchestrator maps "python" to its own; Nomad's raw_exec needs a path)."""
    scaling = fields.pop("scaling", {})
    kind = fields.pop("type", "queue")
    lines = [f'endpoint "{name}" {{', f'  type    = "{kind}"', f'  command = ["{python}", "-u", "{worker}"]']
    for key, value in fields.items():
        lines.append(f"  {key} = {_hcl(value)}")
    if scaling:
        lines.append("  scaling {")
        lines.extend(f"    {k} = {_hcl(v)}" for k, v in scaling.items())
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _hcl(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_hcl(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    return str(value)


def worker_key(state_dir: Path, endpoint: str) -> str:
    """The key workers of `endpoint` present to a stack on the embedded store in `state_dir`:
    derived from the worker secret in its SQLite file (created there if the stack has not yet)."""
    from skiff_core.keys import KeyRing
    from skiff_core.store.sqlite import SqliteStore

    async def read() -> str:
        state_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(state_dir / "skiff.db")
        try:
            keys = KeyRing(None)
            await keys.load(store)
            return keys.worker_key(endpoint)
        finally:
            await store.close()

    return asyncio.run(read())


def stop_process(proc: subprocess.Popen[bytes], sig: int, output: Callable[[], str], timeout: float = 20) -> int:
    """Signal a skiff process and wait; one that hangs dumps its threads (SIGUSR1, see
    skiff_cli.main) into its log before it is killed, and the failure shows that log."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR2)  # every asyncio task's stack (skiff up, gateway, controller)
        time.sleep(1.0)
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"{proc.args} did not stop within {timeout}s of {sig!r}:\n{output()[-30000:]}") from None


class SkiffProcess:
    def __init__(
        self, endpoints_dir: Path, state_dir: Path, extra_env: dict[str, str] | None = None, cwd: Path = REPO
    ) -> None:
        """`cwd`: where `skiff up` starts, the directory workers' relative commands are run from."""
        self.endpoints_dir = endpoints_dir
        self.cwd = cwd
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = TEST_KEY
        self.env = {**os.environ, **FAST_ENV, "SKIFF_API_KEY": TEST_KEY, **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "skiff-up.log"

    def start(self, timeout: float = 30.0) -> SkiffProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                SKIFF,
                "up",
                "--endpoints",
                str(self.endpoints_dir),
                "--state-dir",
                str(self.state_dir),
                "--port",
                str(self.port),
            ],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff up exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 and "Skiff is up" in self.output():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Not left running (with its workers): a fixture whose setup fails never reaches its teardown.
        with contextlib.suppress(AssertionError):
            self.stop()
        raise RuntimeError(f"skiff up did not start in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """What this run of `skiff up` printed (an earlier run's output in the same file excluded)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(getattr(self, "_log_offset", 0))
            return handle.read().decode(errors="replace")

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=timeout)

    def wait_ready_workers(self, endpoint: str, count: int = 1, timeout: float = 60.0) -> dict[str, Any]:
        with self.client() as client:
            deadline = time.monotonic() + timeout
            health: dict[str, Any] = {}
            while time.monotonic() < deadline:
                health = client.get(f"/v2/{endpoint}/health").json()
                if health["workers"]["ready"] >= count:
                    return health
                time.sleep(0.1)
        raise AssertionError(f"{endpoint}: fewer than {count} ready workers after {timeout}s: {health}")

    def worker_pids(self) -> list[int]:
        """PIDs of worker processes (children of skiff up)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        return stop_process(self.proc, sig, self.output)


def children(pid: int) -> set[int]:
    """The process ids whose parent is `pid` (a `skiff up`'s or `skiff controller`'s workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


class LoggedProcess:
    """A process (`skiff gateway`, `skiff controller`) whose output goes to a log file, started
    again after a kill if need be; started once `ready` is in what this run printed."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, ready: str) -> None:
        self.args, self.env, self.log_path, self.ready = args, env, log_path, ready
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, timeout: float = 60.0) -> LoggedProcess:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        eventually(
            lambda: self.ready in self.output() or self.proc is None or self.proc.poll() is not None,
            timeout=timeout,
            what=f"{self.args[1]} to start",
            context=self.output,
        )
        assert self.proc.poll() is None, self.output()
        return self

    def output(self) -> str:
        """What this run printed."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Its exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            stop_process(self.proc, sig, self.output)
        return self.proc.returncode


class GatewayReplica(LoggedProcess):
    """A real `skiff gateway` process on its own port."""

    def __init__(self, endpoints_dir: Path, state_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = state_dir
        args = [SKIFF, "gateway", "--endpoints", str(endpoints_dir), "--state-dir", str(state_dir)]
        super().__init__(
            [*args, "--port", str(self.port)],
            {**os.environ, **FAST_ENV, **env, "SKIFF_API_KEY": TEST_KEY},
            state_dir / "gateway.log",
            "",  # set by start, from the URL then (a test may move a replica to another's port)
        )

    def start(self, timeout: float = 30.0) -> GatewayReplica:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ready = f"Skiff gateway is up at {self.url}"
        super().start(timeout)
        return self

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=timeout)
