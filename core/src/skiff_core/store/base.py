"""The job-store seam: embedded (SQLite, same file as the queue) and cluster (Redis).

One store holds seven kinds of state, and each has its own protocol so that a consumer can ask
for only what it uses: `JobRecords` (the jobs themselves), `JobStreams` (a streaming job's partial
outputs), `WorkerRecords` (the worker registry), `StopSignals` (stop requests on their way to a
worker), `Notes` (small shared state with a TTL), `ClientKeys` (hashed client keys and the worker
secret) and `RateCounters` (rate and concurrency limits shared by every gateway replica).
`JobStore` is all of them plus `Closeable`;
the composition root builds one, closes it, and hands the same object to every consumer.

The parts are views of one store, not stores that can be mixed: a stream belongs to a job record
(deleting the job drops its stream, `wait_stream` also ends when the job turns final, items for a
missing job are dropped), and deleting a worker drops its pending stop signals.

Every status change goes through `transition` (or `claim`, the job-take's own form of it), an
atomic compare-and-set on the current status, so a job cannot be completed twice nor come back
after a cancel, whichever gateway replica or worker races. Waiters (`wait_final`, `wait_stream`,
`take_stops`) wake as soon as any process writes the change: in-process events plus polling for
SQLite, pub/sub for Redis.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from skiff_core.jobs import JobRecord, JobStatus, WorkerRecord
from skiff_core.keys import ClientKeyRecord


@dataclass(frozen=True, slots=True)
class Claim:
    """What `JobRecords.claim` did: "claimed" (`job` is the updated record), "gone" (`job` is the
    final record, or None when missing) or "expired" (`job` is the record, untouched)."""

    outcome: Literal["claimed", "gone", "expired"]
    job: JobRecord | None


@runtime_checkable
class JobRecords(Protocol):
    """Job records: their creation, status changes, removal and the queries over them."""

    async def create(self, job: JobRecord) -> None:
        """Store a new job durably (before the client hears "accepted")."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def transition(
        self, job_id: str, *, expect: Collection[JobStatus], holder: str | None = None, **changes: Any
    ) -> JobRecord | None:
        """Apply `changes` (JobRecord field names, `status` included) iff the job's current status
        is in `expect` and, when `holder` is given, its `worker_id` is `holder`. Returns the
        updated record, or None when the job is missing or not as expected. Wakes `wait_final`
        waiters when the new status is final."""

    async def claim(
        self, job_id: str, *, worker_id: str, receipt: str | None, now: float, retries: int, execution_id: str | None
    ) -> Claim:
        """Hand a queued (or re-delivered) job to `worker_id`, in one atomic step: IN_PROGRESS
        with `worker_id`, `receipt`, `started_at` = `now`, `retries`, and `deadline_at` the earlier
        of `now` + its execution timeout and its creation + its TTL (Runpod's TTL counts from
        submission); a traced job's trace gets `execution_id`. Not claimed: a job that is missing
        or final ("gone"), or still queued past its TTL ("expired", with its record)."""

    async def delete(self, job_id: str) -> None:
        """Remove the job and its stream."""

    async def wait_final(self, job_id: str, timeout: float, *, fresh: JobRecord | None = None) -> JobRecord | None:
        """Return the job once its status is final, or its current record after `timeout` s.
        `fresh`: the job as its caller just created it (a /runsync), which no worker can have
        changed yet: a store may take it for its first look instead of reading the job."""

    async def counts(self, endpoint: str) -> dict[JobStatus, int]:
        """Stored jobs of the endpoint by status (every status present, zero when none)."""

    async def retried_count(self, endpoint: str) -> int:
        """Stored jobs of the endpoint that were delivered more than once."""

    async def due(self, now: float, limit: int = 100) -> list[JobRecord]:
        """Jobs whose `deadline_at` has passed: queued past their TTL, running past their
        execution timeout, or final past their retention."""

    async def jobs_of_worker(self, worker_id: str) -> list[JobRecord]:
        """IN_PROGRESS jobs currently assigned to the worker."""


@runtime_checkable
class JobStreams(Protocol):
    """Partial outputs of streaming jobs, kept beside the job record they belong to."""

    async def append_stream(self, job_id: str, items: list[Any]) -> None:
        """Append partial outputs of a streaming job and wake `wait_stream` waiters."""

    async def read_stream(self, job_id: str, start: int = 0) -> list[Any]:
        """Stream items from index `start` on."""

    async def wait_stream(self, job_id: str, start: int, timeout: float) -> None:
        """Return once the stream has more than `start` items, the job is final, or `timeout` s passed."""


@runtime_checkable
class WorkerRecords(Protocol):
    """The worker registry that gateways flush to and the controller reads and marks."""

    async def upsert_worker(self, worker: WorkerRecord) -> None: ...

    async def get_worker(self, worker_id: str) -> WorkerRecord | None: ...

    async def list_workers(self, endpoint: str | None = None) -> list[WorkerRecord]: ...

    async def delete_worker(self, worker_id: str) -> None:
        """Forget the worker, and its pending stop signals with it."""


@runtime_checkable
class StopSignals(Protocol):
    """Requests to stop one job, waiting for the worker that runs it to ask."""

    async def signal_stop(self, worker_id: str, job_id: str) -> None:
        """Ask a worker to stop one job (cancel, timeout); delivered through `take_stops`."""

    async def take_stops(self, worker_id: str, wait: float) -> list[str]:
        """Pending stop signals for the worker, removed as they are returned; waits up to `wait`
        s for one when there is none."""


@runtime_checkable
class Notes(Protocol):
    """Small pieces of state shared between processes, each with its own lifetime."""

    async def put_note(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Set a small piece of state shared between processes (a gateway's load-balancer report,
        the controller's drain marks), replacing any previous value; it vanishes after `ttl_s` s
        (never when None), so a process that died stops speaking for itself."""

    async def notes(self, prefix: str) -> dict[str, str]:
        """Every unexpired note whose key starts with `prefix`, by key."""


@runtime_checkable
class ClientKeys(Protocol):
    """Client keys (hashed, see skiff_core.keys) and the secret worker keys derive from."""

    async def put_key(self, record: ClientKeyRecord) -> None:
        """Store a new key record (ids are random: an existing id is replaced)."""

    async def get_key(self, key_id: str) -> ClientKeyRecord | None: ...

    async def list_keys(self) -> list[ClientKeyRecord]:
        """Every key record, oldest first."""

    async def delete_key(self, key_id: str) -> bool:
        """Revoke a key; False when there was none with that id."""

    async def server_secret(self, name: str, candidate: str) -> str:
        """The secret stored under `name`; stores `candidate` first when there is none, atomically,
        so that every process asking at once gets the same value."""


@runtime_checkable
class RateCounters(Protocol):
    """Request counts over a sliding window and in-flight slots, by counter key. Slots are leases:
    a gateway that dies holding some frees them when their lease runs out."""

    async def admit(
        self,
        key: str,
        token: str,
        *,
        requests: int | None,
        window_s: float,
        concurrent: int | None,
        lease_s: float,
    ) -> float | None:
        """Admit one request under `key`, atomically against every process: refused when
        `requests` were already admitted in the last `window_s` s, or when `concurrent` slots are
        held. None when admitted: the request is counted and, if `concurrent` is set, holds slot
        `token` until `release` or `lease_s` s (see `renew`). Otherwise the seconds after which
        a retry may succeed (nothing was counted)."""

    async def renew(self, slots: list[tuple[str, str]], lease_s: float) -> None:
        """Extend the lease of held slots, given as (key, token)."""

    async def release(self, key: str, token: str) -> None:
        """Free a slot taken by `admit`."""


@runtime_checkable
class Closeable(Protocol):
    """What the composition root that built the store needs at the end. There is no `start`:
    SqliteStore opens its file when built and RedisStore connects on first use."""

    async def close(self) -> None:
        """Release the store's connections and background tasks."""


@runtime_checkable
class JobStore(
    JobRecords, JobStreams, WorkerRecords, StopSignals, Notes, ClientKeys, RateCounters, Closeable, Protocol
):
    """The whole store, as the composition root builds it; consumers should ask for the parts
    they use."""
