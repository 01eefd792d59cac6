"""Real backing services for tests: moto's SQS/S3 server and a private redis-server, each a process.

Both bind 127.0.0.1 on a free port and are torn down by the context manager. The contract suite
uses them session-scoped; the specific tests use them too. Nothing here is mocked: the code under
test speaks the real wire protocols (SQS/S3 over HTTP, RESP over TCP) to real servers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# moto accepts any credentials; boto3 still insists on having some and on a region.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class MotoServer:
    url: str
    pid: int = 0

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process (e.g. a gateway replica) that should use this server."""
        return {
            **AWS_TEST_ENV,
            "SKIFF_SQS_ENDPOINT_URL": self.url,
            "SKIFF_S3_ENDPOINT_URL": self.url,
            "SKIFF_AWS_REGION": AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        }


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """moto's HTTP server (all services, SQS and S3 included) as a subprocess on 127.0.0.1."""
    # This process's boto3 clients need credentials too; fake ones are harmless elsewhere.
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, "moto server")
        yield MotoServer(url=f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        stop_process(proc)


REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fauxqs_server() -> Iterator[MotoServer]:
    """fauxqs (https://github.com/kibertoad/fauxqs), an SQS-compatible server in Node.js, as a
    subprocess on 127.0.0.1: much faster than moto, so Skiff's own cost shows. Installed on first
    use by scripts/install-fauxqs.sh (pinned by benchmarks/fauxqs/package-lock.json)."""
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    installed = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-fauxqs.sh")], cwd=REPO, capture_output=True, text=True
    )
    if installed.returncode != 0:
        raise RuntimeError(f"scripts/install-fauxqs.sh failed: {installed.stderr.strip()[-2000:]}")
    package = (REPO / installed.stdout.strip()).parent.parent
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(REPO / "benchmarks" / "fauxqs" / "serve.mjs"), str(package), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, "fauxqs")
        yield MotoServer(url=f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class RedisServer:
    port: int
    pid: int = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@contextmanager
def redis_server(tmp_dir: Path) -> Iterator[RedisServer]:
    """A private, non-persistent redis-server on 127.0.0.1 whose files stay inside tmp_dir."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH; install it (apt-get install -y redis-server, as .ci/run does)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_dir),
            "--databases",
            "64",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, "redis-server")
        yield RedisServer(port=port, pid=proc.pid)
    finally:
        stop_process(proc)
