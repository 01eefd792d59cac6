"""Workers whose process ended on their own, kept a while after their exit with the exit code and
the last lines they printed (`skiff status` and the console show them). A note per worker in the
job store: the live registry forgets an exited worker at once, so the autoscaler and the gateways
never count it."""

from __future__ import annotations

import time

from pydantic import ValidationError

from skiff_core.jobs import WorkerRecord
from skiff_core.store.base import Notes

EXITED_PREFIX = "exited:"
KEEP_EXITED_S = 600.0
MAX_SHOWN = 10  # per endpoint, newest first


async def keep_exited(store: Notes, record: WorkerRecord, code: int, output: tuple[str, ...]) -> WorkerRecord:
    exited = record.model_copy(
        update={"exited_at": time.time(), "exit_code": code, "last_output": list(output), "jobs_in_progress": []}
    )
    await store.put_note(f"{EXITED_PREFIX}{record.endpoint}:{record.id}", exited.model_dump_json(), ttl_s=KEEP_EXITED_S)
    return exited


async def recent_exits(store: Notes, endpoint: str) -> list[WorkerRecord]:
    """The endpoint's workers that exited in the last KEEP_EXITED_S seconds, newest first."""
    out = []
    for raw in (await store.notes(f"{EXITED_PREFIX}{endpoint}:")).values():
        try:
            out.append(WorkerRecord.model_validate_json(raw))
        except ValidationError:
            continue  # written by another version: not worth failing a status page for
    out.sort(key=lambda r: r.exited_at or 0.0, reverse=True)
    return out[:MAX_SHOWN]


def exit_view(record: WorkerRecord, now: float) -> dict[str, object]:
    """An exited worker as `/v1/status` and the console list it."""
    return {
        "id": record.id,
        "exit_code": record.exit_code,
        "exited_s_ago": None if record.exited_at is None else max(0.0, now - record.exited_at),
        "ran_s": None if record.exited_at is None else max(0.0, record.exited_at - record.launched_at),
        "last_output": record.last_output,
    }
