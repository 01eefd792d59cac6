"""The one SQLite file behind the embedded queue and job store: connection, transactions, waits.

The queue and the store of one process share a single connection per file (`EmbeddedDb.open`).
Their methods run on the gateway's event loop and call sqlite3 directly: a statement costs a few
microseconds, less than a hop to a thread would. Nothing awaits inside a transaction, so the
shared connection never interleaves two operations; use it from the event-loop thread only.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL (the OS page cache) when
`execute` returns, so it survives a kill -9 of this process; only a power loss or kernel crash can
roll back the last commits (https://www.sqlite.org/pragma.html#pragma_synchronous).

Several processes may open the file at once: WAL lets readers run beside the one writer,
busy_timeout makes a writer wait for the lock instead of failing, and every read-modify-write
runs under BEGIN IMMEDIATE so that it takes the write lock before it reads.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
# How often a long poll looks for commits made by other processes (in-process writes wake it at once).
POLL_INTERVAL_S = 0.025
# A waiter checks again at least this often even when nothing was written: a queue lease that runs
# out makes its message visible without any write to notice.
RECHECK_S = 1.0


class EmbeddedDbError(RuntimeError):
    """The SQLite file cannot be opened or set up."""


class WriteTransaction:
    """`with WriteTransaction(conn):` runs the block under BEGIN IMMEDIATE, commits or rolls back.

    A class rather than contextlib.contextmanager: it sits on every hot-path write.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


class ChangeWaiter:
    """Long polls on the shared file.

    A waiter sleeps until a write in this process notifies its key, or until a poll sees that
    another connection (another process) committed anything (`PRAGMA data_version`), then checks
    again. One ticker task polls for all waiters of the file, and only while someone waits.
    """

    def __init__(self, conn: sqlite3.Connection, interval: float = POLL_INTERVAL_S) -> None:
        self._conn = conn
        self._interval = interval
        self._waiters: dict[Hashable, set[asyncio.Future[None]]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._version = 0

    def notify(self, key: Hashable) -> None:
        """Wake every waiter of `key` (called after a commit in this process)."""
        futures = self._waiters.pop(key, None)
        if futures:
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def wait_until(self, key: Hashable, check: Callable[[], tuple[bool, T]], timeout: float) -> tuple[bool, T]:
        """Run `check` until it reports done or `timeout` s pass; returns its last answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Register before checking, so a notify between the check and the await is not lost.
            future = self._register(key, loop)
            try:
                result = check()
                remaining = deadline - loop.time()
                if result[0] or remaining <= 0:
                    return result
                await asyncio.wait((future,), timeout=min(remaining, RECHECK_S))
            finally:
                self._unregister(key, future)

    def _register(self, key: Hashable, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(key, set()).add(future)
        ticker = self._ticker
        if ticker is None or ticker.done() or ticker.get_loop() is not loop:
            # The baseline is read now, before the caller's check: a commit by another process
            # after this point is seen by the check or by the next tick.
            self._version = self._data_version()
            self._ticker = loop.create_task(self._tick())
        return future

    def _unregister(self, key: Hashable, future: asyncio.Future[None]) -> None:
        futures = self._waiters.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[key]

    def _data_version(self) -> int:
        # Changes whenever another connection commits to the file; our own commits notify instead.
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    async def _tick(self) -> None:
        while self._waiters:
            await asyncio.sleep(self._interval)
            try:
                version = self._data_version()
            except sqlite3.ProgrammingError:  # closed under us: the waiters time out on their own
                return
            if version != self._version:
                self._version = version
                for key in list(self._waiters):
                    self.notify(key)


class EmbeddedDb:
    """One connection per SQLite file per process, shared by the embedded queue and store."""

    _open: ClassVar[dict[str, EmbeddedDb]] = {}

    def __init__(self, key: str, conn: sqlite3.Connection) -> None:
        self._key = key
        self.conn = conn
        self.waiter = ChangeWaiter(conn)
        self._users = 0
        self._schemas: set[str] = set()

    @classmethod
    def open(cls, path: Path, *, name: str, schema: Iterable[str]) -> EmbeddedDb:
        """The shared handle of `path` with the `name` part of the schema created; `release` it."""
        key = os.path.realpath(path)
        db = cls._open.get(key)
        if db is None:
            db = cls(key, _connect(Path(path)))
            cls._open[key] = db
        db._users += 1
        try:
            db._ensure_schema(name, schema)
        except BaseException:
            db.release()
            raise
        return db

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._open.get(self._key) is self:
            del self._open[self._key]
            self.conn.close()

    def _ensure_schema(self, name: str, statements: Iterable[str]) -> None:
        if name in self._schemas:
            return
        try:
            with WriteTransaction(self.conn) as conn:
                for statement in statements:
                    conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise EmbeddedDbError(f"cannot set up the {name} tables in {self._key}: {exc}") from exc
        self._schemas.add(name)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        # isolation_level=None: no implicit BEGIN; transactions are explicit (WriteTransaction) and
        # a lone statement commits on its own. The statement cache keeps our queries prepared.
        conn = sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
    except sqlite3.Error as exc:
        raise EmbeddedDbError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise EmbeddedDbError(f"{path}: SQLite refused WAL mode (journal_mode={mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise EmbeddedDbError(f"cannot open SQLite database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn
