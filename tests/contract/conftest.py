"""Fixtures `queue` and `store`, one test run per implementation.

To add an implementation: append its name to QUEUE_IMPLS / STORE_IMPLS and map that name to a
factory in QUEUE_FACTORIES / STORE_FACTORIES. A factory receives the pytest request (to pull in
other fixtures with `request.getfixturevalue`, e.g. a moto or redis-server process) and the
test's tmp_path, and returns the instance (or an awaitable of it); the fixture closes it after
the test. Tests use only the protocol, and name endpoints, jobs and workers uniquely (see the
`endpoint` and `uid` fixtures), so a shared server across tests is fine.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from skiff_core.queue.base import JobQueue
from skiff_core.store.base import JobStore
from tests.support.services import MotoServer, RedisServer, moto_server, redis_server

QueueFactory = Callable[[pytest.FixtureRequest, Path], JobQueue | Awaitable[JobQueue]]
StoreFactory = Callable[[pytest.FixtureRequest, Path], JobStore | Awaitable[JobStore]]


def _sqlite_queue(request: pytest.FixtureRequest, tmp_path: Path) -> JobQueue:
    from skiff_core.queue.sqlite import SqliteQueue

    return SqliteQueue(tmp_path / "skiff.db")


def _sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    from skiff_core.store.sqlite import SqliteStore

    return SqliteStore(tmp_path / "skiff.db")


def _sqs_queue(request: pytest.FixtureRequest, tmp_path: Path) -> JobQueue:
    from skiff_core.queue.sqs import SqsQueue

    moto: MotoServer = request.getfixturevalue("moto_service")
    return SqsQueue(moto.url, "us-east-1", prefix=f"c{uuid.uuid4().hex[:8]}-")


def _redis_store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    from skiff_core.store.redis import RedisStore

    server: RedisServer = request.getfixturevalue("redis_service")
    return RedisStore(server.url(), prefix=f"c{uuid.uuid4().hex[:8]}:")


@pytest.fixture(scope="session")
def moto_service() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


QUEUE_IMPLS = ["sqlite", "sqs"]
QUEUE_FACTORIES: dict[str, QueueFactory] = {"sqlite": _sqlite_queue, "sqs": _sqs_queue}

STORE_IMPLS = ["sqlite", "redis"]
STORE_FACTORIES: dict[str, StoreFactory] = {"sqlite": _sqlite_store, "redis": _redis_store}


@pytest.fixture(params=QUEUE_IMPLS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobQueue]:
    made = QUEUE_FACTORIES[request.param](request, tmp_path)
    instance = await made if inspect.isawaitable(made) else made
    assert isinstance(instance, JobQueue)
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture(params=STORE_IMPLS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    made = STORE_FACTORIES[request.param](request, tmp_path)
    instance = await made if inspect.isawaitable(made) else made
    assert isinstance(instance, JobStore)
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def uid() -> Callable[[str], str]:
    """Unique names, so tests sharing one SQS or Redis server never see each other's data."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def endpoint(uid: Callable[[str], str]) -> str:
    # SQS queue names allow letters, digits, '-' and '_' (80 characters at most).
    return uid("ep")
