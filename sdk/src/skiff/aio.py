"""asyncio helpers that keep cancellation intact on Python 3.11.

`asyncio.wait_for` on 3.11 can swallow a cancellation that races with what it waits for
(python/cpython#86296 and #107547; 3.12 rebuilt it on `asyncio.timeout`, #96764). A loop like
"wait for a wake-up or a tick" then survives the cancel meant to stop it, and the process never
exits: that hung `skiff up` on SIGINT now and then. `asyncio.timeout` (3.11+) tells its own
timeout from a cancel and re-raises the cancel. ruff bans `asyncio.wait_for` in this package.
A cancel can also be lost further down (a stuck "cancelling" controller loop was seen after the
above was fixed), so `wait_event` also re-raises one it finds pending.
"""

from __future__ import annotations

import asyncio


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until each has ended; a task's own error is not raised here."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; whether it is set.

    A cancel requested earlier and swallowed below (a library that catches CancelledError and
    carries on) is raised again here: the loops that wait here on every turn stop when cancelled
    instead of running on in a task stuck "cancelling" that shutdown waits for forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
