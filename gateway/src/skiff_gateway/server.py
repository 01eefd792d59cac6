"""uvicorn's server as every Skiff process runs it: a graceful stop on SIGINT and SIGTERM alike,
and a hook that runs while the server still answers.

uvicorn.Server.capture_signals (uvicorn/server.py, 0.29+) re-raises a captured signal after the
graceful shutdown, which kills the process with SIGTERM's default action before our own cleanup;
this override keeps the graceful part (handle_exit) and drops the re-raise.

`before_shutdown` runs once the stop is asked for and before the listeners close. `skiff up` stops
its workers there: a worker that finishes its job on SIGTERM can still post the result, and the
workers' long polls end instead of holding the shutdown for uvicorn's graceful timeout. A second
signal calls `on_second_signal` (skiff up kills its workers instead of waiting out their grace);
a third is uvicorn's force exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType

import uvicorn


class GracefulServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        before_shutdown: Callable[[], Awaitable[None]] | None = None,
        on_second_signal: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown
        self._on_second_signal = on_second_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and self._on_second_signal is not None:
            # Hurry instead of uvicorn's force exit, which skips the app's lifespan shutdown (and
            # prints its cancelled task as a traceback); a third signal still forces.
            hurry, self._on_second_signal = self._on_second_signal, None
            hurry()
            return
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._before_shutdown is not None:
            before, self._before_shutdown = self._before_shutdown, None
            await before()
        await super().shutdown(sockets)
