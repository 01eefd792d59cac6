"""Automatic pipelining for the Redis store: commands go to Redis together, as one pipeline (one
write, one read, one pooled connection): those issued in the same event-loop turn, and those
issued while MAX_IN_FLIGHT batches are on the wire.

redis-py spends roughly as much CPU taking a pooled connection, arming its timeouts and parsing
as a round trip takes on loopback; a gateway under load issues many independent commands per
loop turn (one request's job read beside another's result write), so sending them together saves
most of that. Each command still runs on its own: a pipeline without MULTI is not a transaction,
and every job write is a Lua script, atomic by itself.

A caller waits for its own command's reply or error only. A caller that goes away leaves its
command in the batch (it may have been sent already), as a cancelled plain command may have run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# A pipeline's replies are read one by one before any caller hears back: keep batches modest.
MAX_BATCH = 64
# Batches on the wire at once. Commands issued meanwhile wait for one to land and go out together:
# the busier the gateway, the larger the batches, and a command waits at most about a round trip.
MAX_IN_FLIGHT = 2

Queue = Callable[[Any], Any]  # adds one command to a pipeline


class CommandBatcher:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._flights: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def command(self, *args: Any) -> Any:
        """One Redis command, e.g. `await batch.command("HGETALL", key)`; the reply is decoded
        by redis-py's usual response callback for it."""
        return await self._submit(lambda pipe: pipe.execute_command(*args))

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of a registered script; loaded (outside the batch) when Redis does not know it."""
        try:
            return await self._submit(lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            # Redis restarted or flushed its script cache: a plain call loads it again.
            return await script(keys=keys, args=args)

    def _submit(self, queue: Queue) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending and len(self._flights) < MAX_IN_FLIGHT and not self._scheduled:
            # After every callback already due in this turn: they may add commands too.
            self._scheduled = True
            loop.call_soon(self._flush)
        self._pending.append((queue, future))
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

    async def _send(self, batch: list[tuple[Queue, asyncio.Future[Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for queue, _future in batch:
            queue(pipe)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _queue, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_queue, future), reply in zip(batch, replies, strict=True):
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
