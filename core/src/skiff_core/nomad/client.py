"""A small async client for the parts of Nomad's HTTP API that Skiff uses.

python-nomad (2.1.0, synchronous, run in a thread) does register / read / allocations /
deregister. It has no scale call, no blocking-query support and sends no `namespace` with
evaluation reads, so those go through httpx:
`POST /v1/job/:id/scale` (https://developer.hashicorp.com/nomad/api-docs/jobs#scale-task-group)
and `?index=&wait=` reads answered with `X-Nomad-Index`
(https://developer.hashicorp.com/nomad/api-docs#blocking-queries). Nomad Variables go through
python-nomad's `variable` API (`GET|PUT|DELETE /v1/var/:path`,
https://developer.hashicorp.com/nomad/api-docs/variables/variables).

Every failure becomes a NomadError whose message says what to check: an unreachable address, a
token the ACL system refuses (403 "Permission denied" / "ACL token not found"), a request Nomad
rejects (400 with its reason, or 500 with a list of validation errors: see NomadInvalidJob).
Connection errors and other 5xx answers are retried with exponential backoff before giving up.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import requests

# The repository's own nomad/ folder (job files) shadows python-nomad's `nomad` package for type
# checkers and import sorters; importing by name keeps it what it is at runtime (it has no stubs).
_nomad: Any = importlib.import_module("nomad")
nomad_exc: Any = importlib.import_module("nomad.api.exceptions")

log = logging.getLogger(__name__)

T = TypeVar("T")

# Nomad caps `wait` at 5 minutes (nomad/structs/structs.go MaxBlockingRPCQueryTime) and adds up
# to wait/16 of jitter (nomad/rpc.go).
MAX_WAIT_S = 300.0

# What a 403 says the token lacks, in the words of the ACL policy spec
# (https://developer.hashicorp.com/nomad/docs/other-specifications/acl-policy).
JOB_CAPABILITIES = "the submit-job, read-job and scale-job capabilities"
VARIABLE_CAPABILITIES = (
    'variables capabilities ["read", "write", "destroy"] on path "nomad/jobs/skiff-*" '
    "(nomad/policies/skiff-controller.policy.hcl)"
)
# Check-and-set rounds before giving up on a variable another writer keeps changing.
_CAS_ATTEMPTS = 5


class NomadError(Exception):
    """Anything Nomad refused or could not be asked."""


class NomadUnreachable(NomadError):
    pass


class NomadPermissionDenied(NomadError):
    pass


class NomadBadRequest(NomadError):
    pass


class NomadInvalidJob(NomadBadRequest):
    """Job.Validate refused the job. Nomad answers 500 for it (command/agent/http.go
    errCodeFromHandler: an error without a code is 500), so it must not be retried."""


# Validation errors are go-multierror lists ("1 error occurred:\n\t* Task group worker
# validation failed: ..."); transient 500s ("No cluster leader", "rpc error: ...") are not.
_VALIDATION_500 = re.compile(r"^\d+ errors? occurred:|validation failed")


class NomadNotFound(NomadError):
    pass


class NomadConflict(NomadError):
    """A check-and-set (`cas`) variable write or delete found another ModifyIndex (409)."""


class _Retryable(Exception):
    def __init__(self, error: NomadError) -> None:
        super().__init__(str(error))
        self.error = error


def _body_text(resp: Any) -> str:
    text = getattr(resp, "text", None)
    return (text or "").strip() or f"HTTP {getattr(resp, 'status_code', '?')}"


class _ServerNameAdapter(requests.adapters.HTTPAdapter):
    """Sends `name` as SNI and checks the certificate against it (NOMAD_TLS_SERVER_NAME), whatever
    host the address names; urllib3 takes both as connection-pool keywords."""

    def __init__(self, name: str) -> None:
        self._name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self._name, assert_hostname=self._name)
        super().init_poolmanager(*args, **kwargs)


def _sni_hook(name: str) -> Callable[[httpx.Request], Awaitable[None]]:
    # httpcore uses the "sni_hostname" extension both as SNI and as the name checked in the certificate.
    async def hook(request: httpx.Request) -> None:
        request.extensions["sni_hostname"] = name

    return hook


class NomadClient:
    def __init__(
        self,
        address: str = "http://127.0.0.1:4646",
        *,
        token: str | None = None,
        namespace: str | None = "default",
        region: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 4,
        backoff_s: float = 0.2,
        ca_cert: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.namespace = namespace
        self.region = region
        self._token = token
        self._retries = retries
        self._backoff_s = backoff_s
        # python-nomad: nomad.Nomad(address=..., token=..., namespace=..., region=..., timeout=...)
        self._session = requests.Session()
        if ca_cert:
            # A TLS-only cluster (terraform/modules/nomad-servers) signs with its own CA: NOMAD_CACERT.
            self._session.verify = ca_cert
        # A cluster that verifies clients (tls.verify_https_client) wants NOMAD_CLIENT_CERT/KEY.
        cert = (client_cert, client_key) if client_cert and client_key else None
        if cert:
            self._session.cert = cert
        if tls_server_name:
            self._session.mount("https://", _ServerNameAdapter(tls_server_name))
        self._nomad = _nomad.Nomad(
            address=self.address,
            session=self._session,
            token=token,
            namespace=namespace,
            region=region,
            timeout=int(max(1, timeout_s)),
            # python-nomad passes `verify` on every request (nomad/api/base.py), and a per-request
            # value overrides Session.verify: its default False would turn certificate checks off.
            verify=ca_cert or True,
            # Likewise: python-nomad would otherwise read NOMAD_CLIENT_CERT/KEY itself.
            cert=cert or ("", ""),
        )
        headers = {"X-Nomad-Token": token} if token else {}
        verify: ssl.SSLContext | bool = True
        if ca_cert or cert:
            verify = ssl.create_default_context(cafile=ca_cert)
            if cert:
                verify.load_cert_chain(*cert)
        hooks = {"request": [_sni_hook(tls_server_name)]} if tls_server_name else None
        self._http = httpx.AsyncClient(
            base_url=self.address, headers=headers, timeout=timeout_s, verify=verify, event_hooks=hooks
        )

    # --- error handling -------------------------------------------------------------------
    def _denied(self, detail: str, needs: str) -> NomadPermissionDenied:
        who = "the token in NOMAD_TOKEN" if self._token else "an anonymous request (no NOMAD_TOKEN)"
        return NomadPermissionDenied(
            f"Nomad at {self.address} refused {who}: {detail}. The token needs {needs} "
            f"in namespace {self.namespace or 'default'!r}."
        )

    def _from_status(self, status: int, text: str, what: str, needs: str = JOB_CAPABILITIES) -> NomadError:
        if status == 403:
            return self._denied(text, needs)
        if status == 404:
            return NomadNotFound(f"{what}: not found ({text})")
        if status == 400:
            return NomadBadRequest(f"Nomad rejected {what}: {text}")
        if status == 409:
            return NomadConflict(f"{what}: changed concurrently ({text})")
        if status == 500 and _VALIDATION_500.search(text):
            return NomadInvalidJob(f"Nomad rejected {what}: {text}")
        return NomadError(f"Nomad answered {status} to {what}: {text}")

    def _unreachable(self, detail: object) -> NomadUnreachable:
        return NomadUnreachable(
            f"cannot reach Nomad at {self.address} ({detail}). Check NOMAD_ADDR / --nomad-addr "
            "and that the agent is running (`nomad agent -dev` listens on http://127.0.0.1:4646)."
        )

    def _translate_python_nomad(self, exc: Exception, what: str, needs: str) -> NomadError | _Retryable:
        resp = getattr(exc, "nomad_resp", None)
        if isinstance(resp, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return _Retryable(self._unreachable(resp))
        if isinstance(resp, requests.RequestException):
            return _Retryable(self._unreachable(resp))
        if isinstance(exc, requests.exceptions.RequestException):
            return _Retryable(self._unreachable(exc))
        status = int(getattr(resp, "status_code", 0) or 0)
        error = self._from_status(status, _body_text(resp), what, needs)
        return _Retryable(error) if status >= 500 and not isinstance(error, NomadInvalidJob) else error

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = self._backoff_s
        for attempt in range(self._retries + 1):
            try:
                return await call()
            except _Retryable as retry:
                if attempt == self._retries:
                    raise retry.error from None
                log.warning("%s failed (%s); retrying in %.1fs", what, retry.error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def _lib(self, what: str, fn: Callable[[], T], needs: str = JOB_CAPABILITIES) -> T:
        async def call() -> T:
            try:
                return await asyncio.to_thread(fn)
            except (nomad_exc.BaseNomadException, requests.RequestException) as exc:
                translated = self._translate_python_nomad(exc, what, needs)
                if isinstance(translated, _Retryable):
                    raise translated from None
                raise translated from None

        return await self._retrying(what, call)

    async def _http_call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout_s: float | None = None,
        needs: str = JOB_CAPABILITIES,
    ) -> httpx.Response:
        query: dict[str, Any] = {}
        if self.namespace:
            query["namespace"] = self.namespace
        if self.region:
            query["region"] = self.region
        query.update(params or {})

        async def call() -> httpx.Response:
            try:
                resp = await self._http.request(
                    method,
                    path,
                    params=query,
                    json=json,
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                raise _Retryable(self._unreachable(exc)) from None
            if resp.status_code >= 400:
                error = self._from_status(resp.status_code, resp.text.strip(), what, needs)
                if resp.status_code >= 500 and not isinstance(error, NomadInvalidJob):
                    raise _Retryable(error)
                raise error
            return resp

        return await self._retrying(what, call)

    # --- jobs (python-nomad) --------------------------------------------------------------
    async def register(self, job_body: dict[str, Any], *, preserve_counts: bool = True) -> dict[str, Any]:
        """`POST /v1/jobs` with `{"Job", "PreserveCounts"}` (api/jobs.go JobRegisterRequest);
        answers `{"EvalID", "EvalCreateIndex", "JobModifyIndex", "Warnings"}`."""
        body = dict(job_body)
        if preserve_counts:
            body["PreserveCounts"] = True
        job_name = job_body["Job"]["ID"]
        result: dict[str, Any] = await self._lib(
            f"registering job {job_name}", lambda: self._nomad.jobs.register_job(body)
        )
        return result

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = await self._lib(f"reading job {job_id}", lambda: self._nomad.job.get_job(job_id))
        except NomadNotFound:
            return None
        return job

    async def list_jobs(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """`GET /v1/jobs?meta=true` (JobListStub, with `Meta` since Nomad 1.6)."""
        jobs: list[dict[str, Any]] = await self._lib(
            "listing jobs", lambda: self._nomad.jobs.get_jobs(prefix=prefix, meta=True)
        )
        return jobs

    async def allocations(self, job_id: str) -> list[dict[str, Any]]:
        """`GET /v1/job/:id/allocations` (AllocationListStub)."""
        try:
            allocs: list[dict[str, Any]] = await self._lib(
                f"listing allocations of {job_id}", lambda: self._nomad.job.get_allocations(job_id)
            )
        except NomadNotFound:
            return []
        return allocs

    async def evaluation(self, eval_id: str) -> dict[str, Any]:
        """`GET /v1/evaluation/:id?namespace=`: `Status`, `FailedTGAllocs` (api/evaluations.go).
        Through httpx: python-nomad sends no namespace here, and nomad/eval_endpoint.go GetEval
        checks read-job on the request's namespace, so a namespace-scoped token got 403."""
        resp = await self._http_call(f"reading evaluation {eval_id}", "GET", f"/v1/evaluation/{eval_id}")
        evaluation: dict[str, Any] = resp.json()
        return evaluation

    async def allocation(self, alloc_id: str) -> dict[str, Any] | None:
        """`GET /v1/allocation/:id`: the full Allocation, with `DesiredTransition` (which the list
        stubs leave out); None when it is gone."""
        try:
            resp = await self._http_call(f"reading allocation {alloc_id}", "GET", f"/v1/allocation/{alloc_id}")
        except NomadNotFound:
            return None
        alloc: dict[str, Any] = resp.json()
        return alloc

    async def stop_allocation(self, alloc_id: str) -> dict[str, Any] | None:
        """`POST /v1/allocation/:id/stop` (command/agent/alloc_endpoint.go allocStop): Nomad marks
        the allocation to migrate and its scheduler stops it and places a replacement under the
        same name (nomad/alloc_endpoint.go Alloc.Stop, scheduler computeMigrations). Answers
        `{"EvalID", "Index"}`; None when the allocation is gone."""
        try:
            resp = await self._http_call(
                f"stopping allocation {alloc_id}",
                "POST",
                f"/v1/allocation/{alloc_id}/stop",
                needs="the alloc-lifecycle capability",
            )
        except NomadNotFound:
            return None
        result: dict[str, Any] = resp.json()
        return result

    async def deregister(self, job_id: str, *, purge: bool = True) -> dict[str, Any] | None:
        """`DELETE /v1/job/:id?purge=true`; None when the job is already gone."""
        try:
            result: dict[str, Any] = await self._lib(
                f"stopping job {job_id}", lambda: self._nomad.job.deregister_job(job_id, purge=purge)
            )
        except NomadNotFound:
            return None
        return result

    # --- variables (python-nomad) ---------------------------------------------------------
    # https://developer.hashicorp.com/nomad/api-docs/variables/variables: a variable is
    # `{"Namespace", "Path", "CreateIndex", "ModifyIndex", "CreateTime", "ModifyTime", "Items"}`;
    # GET answers 404 "variable not found" when there is none; PUT takes `{"Namespace", "Path",
    # "Items"}` and `?cas=<ModifyIndex>` (0: only if absent), answering 409 with the current
    # variable on a mismatch; DELETE answers 204 (also when absent) and takes `?cas=` too.
    # Needs variables:read / write / destroy on the path (403 otherwise).
    async def get_variable(self, path: str) -> dict[str, Any] | None:
        try:
            variable: dict[str, Any] = await self._lib(
                f"reading variable {path}",
                lambda: self._nomad.variable.get_variable(path, namespace=self.namespace),
                VARIABLE_CAPABILITIES,
            )
        except NomadNotFound:
            return None
        return variable

    async def put_variable(self, path: str, items: dict[str, str], *, cas: int | None = None) -> dict[str, Any]:
        body = {"Namespace": self.namespace or "default", "Path": path, "Items": items}
        variable: dict[str, Any] = await self._lib(
            f"writing variable {path}",
            lambda: self._nomad.variable.create_variable(path, body, namespace=self.namespace, cas=cas),
            VARIABLE_CAPABILITIES,
        )
        return variable

    async def delete_variable(self, path: str, *, cas: int | None = None) -> None:
        await self._lib(
            f"deleting variable {path}",
            lambda: self._nomad.variable.delete_variable(path, namespace=self.namespace, cas=cas),
            VARIABLE_CAPABILITIES,
        )

    async def set_variable_item(self, path: str, item: str, value: str) -> bool:
        """Make the variable's `item` equal `value`, keeping its other items; False when it
        already was (nothing written). Read, then write with `cas` = the ModifyIndex read, so a
        concurrent writer is never overwritten blindly: on 409 read again."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self.get_variable(path)
            items = dict((current or {}).get("Items") or {})
            if items.get(item) == value:
                return False
            items[item] = value
            try:
                await self.put_variable(path, items, cas=int(current["ModifyIndex"]) if current else 0)
            except NomadConflict:
                continue
            return True
        raise NomadConflict(f"variable {path}: still changing after {_CAS_ATTEMPTS} check-and-set writes")

    async def remove_variable_item(self, path: str, item: str) -> bool:
        """Remove `item` from the variable, deleting the variable when nothing else is left in
        it; False when there was nothing to remove. Check-and-set like `set_variable_item`."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self.get_variable(path)
            items = dict((current or {}).get("Items") or {})
            if current is None or item not in items:
                return False
            del items[item]
            cas = int(current["ModifyIndex"])
            try:
                if items:
                    await self.put_variable(path, items, cas=cas)
                else:
                    await self.delete_variable(path, cas=cas)
            except NomadConflict:
                continue
            return True
        raise NomadConflict(f"variable {path}: still changing after {_CAS_ATTEMPTS} check-and-set writes")

    # --- scale and blocking queries (httpx) -----------------------------------------------
    async def scale(
        self, job_id: str, group: str, count: int, message: str, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`POST /v1/job/:id/scale` with api/jobs.go ScalingRequest
        `{"Count", "Target": {"Job", "Group"}, "Message", "Meta", "PolicyOverride"}`."""
        body = {
            "Count": count,
            "Target": {"Job": job_id, "Group": group},
            "Message": message,
            "Meta": meta or {},
            "PolicyOverride": False,
        }
        resp = await self._http_call(
            f"scaling {job_id}.{group} to {count}", "POST", f"/v1/job/{job_id}/scale", json=body
        )
        result: dict[str, Any] = resp.json()
        return result

    async def scale_status(self, job_id: str) -> dict[str, Any]:
        """`GET /v1/job/:id/scale`: `TaskGroups[g].{Desired, Placed, Running, Healthy, ...}`."""
        resp = await self._http_call(f"reading scale status of {job_id}", "GET", f"/v1/job/{job_id}/scale")
        result: dict[str, Any] = resp.json()
        return result

    async def blocking_get(
        self, path: str, *, index: int, wait_s: float, params: dict[str, Any] | None = None
    ) -> tuple[Any, int]:
        """A blocking read: returns when the resource's index passes `index` or after `wait_s`.

        The answer's `X-Nomad-Index` is the next `index`. Nomad documents that a return does not
        prove a change, and that an index going backwards (a restored snapshot) means start over.
        """
        wait_s = min(wait_s, MAX_WAIT_S)
        query = dict(params or {})
        query.update({"index": index, "wait": f"{int(max(1, wait_s))}s"})
        resp = await self._http_call(f"watching {path}", "GET", path, params=query, timeout_s=wait_s + wait_s / 16 + 10)
        new_index = int(resp.headers.get("X-Nomad-Index", "0") or 0)
        if new_index < index:
            new_index = 0
        return resp.json(), new_index

    async def watch_allocations(self, job_id: str, *, index: int, wait_s: float) -> tuple[list[dict[str, Any]], int]:
        allocs, new_index = await self.blocking_get(f"/v1/job/{job_id}/allocations", index=index, wait_s=wait_s)
        return list(allocs or []), new_index

    async def stream_logs(
        self, alloc_id: str, task: str, log_type: str, *, follow: bool, origin: str = "start", offset: int = 0
    ) -> AsyncIterator[bytes]:
        """`GET /v1/client/fs/logs/:alloc_id?task=&type=&follow=&plain=true` (command/agent/
        fs_endpoint.go HTTPServer.Logs): the task's stdout or stderr as raw bytes (plain=true skips
        the JSON StreamFrame wrapping); with `follow` the answer stays open for new output and ends
        when the task does. Needs read-logs (or read-fs) on the namespace."""
        query: dict[str, Any] = {
            "task": task,
            "type": log_type,
            "follow": "true" if follow else "false",
            "plain": "true",
            "origin": origin,
            "offset": str(offset),
        }
        if self.namespace:
            query["namespace"] = self.namespace
        if self.region:
            query["region"] = self.region
        what = f"reading the {log_type} of allocation {alloc_id}"
        try:
            async with self._http.stream(
                "GET", f"/v1/client/fs/logs/{alloc_id}", params=query, timeout=httpx.Timeout(None, connect=10.0)
            ) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace").strip()
                    raise self._from_status(resp.status_code, text, what, "read-logs")
                async for chunk in resp.aiter_bytes():
                    yield chunk
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    async def close(self) -> None:
        await self._http.aclose()
        self._session.close()
