"""Automatic pipelining for the Redis store: commands go to Redis together, as one pipeline (one
write, one read, one pooled connection): those issued in the same event-loop turn, and those
issued while MAX_IN_FLIGHT batches are on the wire.

redis-py spends roughly as much CPU taking a pooled connection, arming its timeouts and parsing
as a round trip takes on loopback; a gateway under load issues many independent commands per
loop turn (one request's job read beside another's result write), so sending them together saves
most of that. Each command still runs on its own: a pipeline without MULTI is not a transaction,
and every job write is a Lua script, atomic by itself.

A batch goes out on a pooled redis-py connection (its handshake, TLS, health checks and retry
policy are redis-py's) but not through redis-py's Pipeline object, whose per-command staging,
Python packing and response callbacks cost about as much again: hiredis packs the commands, and
replies come back as Redis sent them (an HGETALL is a map on RESP3, redis-py's default, and a
flat field, value, ... list on RESP2).

A caller waits for its own command's reply or error only. A caller that goes away leaves its
command in the batch (it may have been sent already), as a cancelled plain command may have run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import DataError, NoScriptError, ResponseError

# A pipeline's replies are read one by one before any caller hears back: keep batches modest.
MAX_BATCH = 64
# Batches on the wire at once. Commands issued meanwhile wait for one to land and go out together:
# the busier the gateway, the larger the batches, and a command waits at most about a round trip.
MAX_IN_FLIGHT = 2


class CommandBatcher:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._flights: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def command(self, *args: Any) -> Any:
        """One Redis command, e.g. `await batch.command("HGETALL", key)`; its reply as Redis sent
        it (strings decoded if the client decodes responses), an error reply raised."""
        return await self._submit(_pack(args))

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of a registered script; loaded (outside the batch) when Redis does not know it."""
        try:
            return await self._submit(_pack(("EVALSHA", script.sha, len(keys), *keys, *args)))
        except NoScriptError:
            # Redis restarted or flushed its script cache: a plain call loads it again.
            return await script(keys=keys, args=args)

    def _submit(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending and len(self._flights) < MAX_IN_FLIGHT and not self._scheduled:
            # After every callback already due in this turn: they may add commands too.
            self._scheduled = True
            loop.call_soon(self._flush)
        self._pending.append((command, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._flights.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._flights.discard(task)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        pool = self._redis.connection_pool
        try:
            packed = b"".join(command for command, _future in batch)
            connection = await pool.get_connection()
            try:
                # As redis-py's pipelines do: a dropped connection is closed and the batch sent
                # again on a fresh one, as often as the client's retry policy allows (not at all by default).
                replies = await connection.retry.call_with_retry(
                    lambda: _exchange(connection, packed, len(batch)),
                    lambda _error: connection.disconnect(),
                )
            finally:
                await pool.release(connection)
        except BaseException as exc:
            for _command, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_command, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def close(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        self._flush()
        while self._flights:
            await asyncio.gather(*list(self._flights), return_exceptions=True)


def _pack(command: tuple[Any, ...]) -> bytes:
    try:
        return hiredis.pack_command(command)
    except TypeError as exc:  # what redis-py raises for a value it cannot send (None, a bool)
        raise DataError(str(exc)) from exc


async def _exchange(connection: Any, packed: bytes, replies: int) -> list[Any]:
    """Sends a batch and reads every reply, error replies included, so the connection stays in step."""
    await connection.send_packed_command(packed)
    out: list[Any] = []
    for _ in range(replies):
        try:
            out.append(await connection.read_response())
        except ResponseError as exc:
            out.append(exc)
    return out
