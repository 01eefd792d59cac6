"""Embedded payload store: one file per job and kind under <state_dir>/payloads/<job_id>/.

A file's modification time is set to its expiry, so `sweep` can drop leftovers of jobs that were
never deleted (a crash between storing a payload and storing the job) without an index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from skiff_core.payloads.base import KINDS, PayloadKind, PayloadMissing

_SCHEME = "file:"
# Job ids become directory names: no separators, no leading dot.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def _check_job_id(job_id: str) -> str:
    if not _SAFE_ID.match(job_id):
        raise ValueError(f"job id {job_id!r} cannot name a payload (letters, digits, '.', '_', '-' only)")
    return job_id


def _check_kind(kind: str) -> PayloadKind:
    if kind not in KINDS:
        raise ValueError(f"payload kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


class FilePayloads:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, job_id: str, kind: str) -> Path:
        return self._root / _check_job_id(job_id) / f"{_check_kind(kind)}.json"

    async def put(self, job_id: str, kind: PayloadKind, data: bytes, expires_at: float) -> str:
        path = self._path(job_id, kind)
        await asyncio.to_thread(_write_durably, path, data, expires_at)
        return f"{_SCHEME}{job_id}/{kind}"

    async def get(self, ref: str) -> bytes:
        rest = ref.removeprefix(_SCHEME)
        job_id, sep, kind = rest.partition("/")
        if rest == ref or not sep:
            raise ValueError(f"not a payload ref of the file store: {ref!r}")
        path = self._path(job_id, kind)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise PayloadMissing(f"payload {ref!r} is gone (expired or deleted)") from None

    async def delete(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._root / _check_job_id(job_id), True)

    async def sweep(self, now: float | None = None) -> int:
        """Remove payload files whose expiry has passed; returns how many."""
        return await asyncio.to_thread(self._sweep, time.time() if now is None else now)

    def _sweep(self, now: float) -> int:
        removed = 0
        for path in self._root.glob("*/*.json"):
            try:
                if path.stat().st_mtime <= now:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            # A put racing this sweep may have just recreated the directory: leave it then.
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return removed

    async def close(self) -> None:
        return None


def _write_durably(path: Path, data: bytes, expires_at: float) -> None:
    # Write aside, fsync, rename: a reader sees the old or the new payload, never half of one, and
    # the job referencing it is only stored (and acknowledged) once this has returned.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.utime(tmp, (expires_at, expires_at))
    os.replace(tmp, path)
