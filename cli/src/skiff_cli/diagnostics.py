"""Ways to see inside a running skiff process without stopping it.

SIGUSR1 (registered in skiff_cli.main) prints every thread's stack; SIGUSR2, installed here on
the running event loop, prints every asyncio task's stack: where each coroutine is waiting.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys


def dump_tasks_on_sigusr2() -> None:
    """Call from inside the event loop of a long-running command."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        tasks = asyncio.all_tasks(loop)
        # One write, so a reader of the log never sees the heading without the stacks.
        text = io.StringIO()
        text.write(f"skiff: {len(tasks)} asyncio task(s):\n")
        for task in tasks:
            task.print_stack(file=text)
        sys.stderr.write(text.getvalue())
        sys.stderr.flush()

    loop.add_signal_handler(signal.SIGUSR2, dump)
