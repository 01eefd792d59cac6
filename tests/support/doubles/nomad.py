"""A Nomad double: the HTTP endpoints Skiff uses, with Nomad's shapes, codes and blocking queries.

Sources for each shape:
- Register `PUT|POST /v1/jobs` -> JobRegisterResponse `{EvalID, EvalCreateIndex, JobModifyIndex,
  Warnings}`: https://developer.hashicorp.com/nomad/api-docs/jobs#create-job, api/jobs.go.
  `PreserveCounts` keeps the counts of existing groups (nomad/job_endpoint.go Register).
  Count outside the scaling policy: 400 "task group count must not be greater than maximum count
  in scaling policy" (nomad/structs TaskGroup.validateScalingPolicy; e2e/scaling).
- `GET /v1/jobs?meta=true` -> []JobListStub with Meta: api-docs/jobs#list-jobs.
- `GET /v1/job/:id`, `DELETE /v1/job/:id?purge=true` -> `{EvalID, EvalCreateIndex, JobModifyIndex}`:
  api-docs/jobs#read-job, #stop-a-job. Unknown job: 404 "job not found".
- `GET /v1/job/:id/allocations` -> []AllocationListStub (api/allocations.go): api-docs/jobs#list-job-allocations.
- `GET /v1/job/:id/summary` -> JobSummary `{JobID, Namespace, Summary: {g: {Queued, Complete,
  Failed, Running, Starting, Lost, Unknown}}, Children, CreateIndex, ModifyIndex}`.
- `POST /v1/job/:id/scale` with ScalingRequest; 400 "group count was less than scaling policy
  minimum: %d < %d" / "group count was greater than scaling policy maximum: %d > %d" and
  "job scaling blocked due to active deployment" (nomad/job_endpoint.go Scale). `GET` ->
  JobScaleStatusResponse (api/scaling.go): api-docs/jobs#read-job-scale-status.
- `POST|PUT /v1/allocation/:id/stop` -> AllocStopResponse `{EvalID, Index}`; 404 "alloc not
  found"; needs alloc-lifecycle (command/agent/alloc_endpoint.go allocStop, nomad/alloc_endpoint.go
  Alloc.Stop): marks the allocation DesiredTransition.Migrate and evaluates the job with
  TriggeredBy "alloc-stop". The reconciler stops each migrating allocation still standing after
  computeStop ("alloc is being migrated") and places a replacement under its name
  (scheduler/reconciler/reconcile_cluster.go computeMigrations), so the count stays.
- `GET /v1/evaluation/:id` -> Evaluation with `FailedTGAllocs: {group: AllocationMetric}` and
  `BlockedEval` when placement fails (api/evaluations.go; the CLI's "Placement Failure" output).
  A device request no node can satisfy is filtered as ConstraintFiltered {"missing devices": n}
  (scheduler/feasible/feasible.go DeviceChecker, FilterConstraintDevices).
- Allocation names are `<job>.<group>[<index>]`; new ones take the lowest free index
  (scheduler/reconcile.go computePlacements, nameIndex.Next). What a lower count stops is
  `compute_stop`, a transcription of v1.9.7's computeStop: the highest indexes in the steady
  state, migrating allocations first, a failed allocation awaiting its delayed reschedule counted
  (it is replaced under its own name after ReschedulePolicy.Delay), random where Go's map order
  decides. 2.0.x HEAD differs in one filter, noted there; the double follows 1.9.7.
- Registration canonicalises and validates the job (`validate_job`: api/jobs.go and api/tasks.go
  Canonicalize, nomad/structs Job/TaskGroup/Task/UpdateStrategy/Service Validate) and answers
  the errors with 500, as the HTTP agent does.
- Namespaces: a token's capabilities can be limited to some namespaces (`token_namespaces`);
  every route checks the request's `?namespace=` ("default" without one).
- Blocking queries: `?index=N&wait=Ds` hold the request until the table's index passes N or the wait
  ends; every answer carries `X-Nomad-Index`, `X-Nomad-KnownLeader`, `X-Nomad-LastContact`
  (api-docs#blocking-queries).
- ACLs: `X-Nomad-Token`; no token or a token without the capability -> 403 "Permission denied",
  an unknown token -> 403 "ACL token not found" (nomad/structs/errors.go ErrPermissionDenied,
  ErrTokenNotFound). Variables need "variables:read|write|destroy|list" here (the double does not
  model per-path rules).
- Variables (https://developer.hashicorp.com/nomad/api-docs/variables/variables,
  command/agent/variable_endpoint.go, nomad/state/state_store_variables.go): `GET /v1/var/:path`
  -> `{Namespace, Path, CreateIndex, ModifyIndex, CreateTime, ModifyTime, Items}` or 404 "variable
  not found"; `PUT|POST /v1/var/:path` with `{Namespace, Path, Items}` (the `namespace` query
  overrides the body; no Items: 400 "variable missing required Items object"; paths must match
  `^[a-zA-Z0-9-_~/]{1,128}$`) answers the stored variable, unchanged Items keep the ModifyIndex;
  `?cas=N` writes only if the ModifyIndex is N (0: only if absent), else 409 with the current
  variable (Items left out without variables:read); `DELETE` answers 204 with no body, also for an
  absent variable, and takes `?cas=` too; `GET /v1/vars?prefix=` lists metadata without Items.
- Tasks (optional): each allocation of a raw_exec task runs as a local subprocess in its own task
  directory with the environment Nomad gives (https://developer.hashicorp.com/nomad/docs/runtime/environment):
  NOMAD_ALLOC_ID, NOMAD_ALLOC_INDEX, NOMAD_ALLOC_NAME, NOMAD_PORT_<label>, NOMAD_ADDR_<label>, ...
  `${VAR}` in the task's env is interpolated; stopping sends KillSignal, then SIGKILL after KillTimeout.
  `Templates` with `Envvars: true` are rendered into the task directory and read back as
  `KEY=value` lines that override `Env` (client/taskenv/env.go: "Copy template env vars as they
  override task env vars"). Only `{{ with nomadVar "PATH" }}KEY={{ .item }}{{ end }}` (several
  KEY= lines allowed) is understood, a missing item rendering "<no value>", or failing the task
  with `ErrMissingKey` (see `_render_templates`), reading the variable with the task's implicit workload
  identity access: `nomad/jobs`, `nomad/jobs/<job>`, `.../<group>`, `.../<group>/<task>` in the
  job's namespace (https://developer.hashicorp.com/nomad/docs/concepts/variables, "Task Access to
  Variables"). Anything else fails the task with "Template failed: ..." (TaskEvent "Killing",
  the way Nomad kills a task whose template cannot render); a missing variable fails it too,
  where Nomad would block the task until the variable appears.
- Consul services (optional, with a ConsulDouble): a running allocation's group services are
  registered as `_nomad-task-<alloc id>-group-<group>-<service>-<port label>`
  (client/serviceregistration/id.go MakeAllocServiceID) on the allocation's port; an `http` check
  starts `critical` (Consul's default initial status, https://developer.hashicorp.com/consul/docs/
  services/usage/checks) and is then passing for a 2xx answer, warning for 429, critical otherwise
  (https://developer.hashicorp.com/consul/docs/services/usage/checks#http-checks), probed every
  Interval. Services are deregistered before the task is killed, as Nomad's task runner does.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tests.support.doubles.tls import server_context

_GO_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_VAR_PATH = re.compile(r"^[a-zA-Z0-9\-_~/]{1,128}$")
_NOMAD_VAR_TMPL = re.compile(r'^\{\{ with nomadVar "(?P<path>[^"]+)" \}\}(?P<body>.*)\{\{ end \}\}$', re.S)
_ENV_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=\{\{ \.(?P<item>[A-Za-z0-9_]+) \}\}$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _wait_seconds(text: str | None) -> float:
    if not text:
        return 300.0  # Nomad's default wait
    m = _GO_DURATION.match(text)
    # nomad/structs/structs.go MaxBlockingRPCQueryTime: 5 minutes at most.
    return min(300.0, float(m.group(1)) * _UNITS[m.group(2)]) if m else 300.0


def _now_ns() -> int:
    return time.time_ns()


@dataclass
class FakeNode:
    name: str
    # (vendor, type, model name) -> number of healthy instances (api/resources.go NodeDeviceResource)
    devices: dict[tuple[str, str, str], int] = field(default_factory=dict)
    datacenter: str = "dc1"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class _TemplateError(Exception):
    """A template the double (standing in for the Nomad client) cannot render."""


class HttpError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def task_event(
    kind: str, display: str, *, message: str = "", driver_message: str = "", details: dict[str, str] | None = None
) -> dict[str, Any]:
    """api/tasks.go TaskEvent as the agent serves it: Time in Unix nanoseconds, DisplayMessage
    filled by nomad/structs TaskEvent.PopulateEventDisplayMessage (Received: "Task received by
    client", Started: "Task started by client", Task Setup and Driver: the message itself), and
    Details as structs.NewTaskEvent and SetMessage set them; a driver's event carries its
    annotations as Details (client/allocrunner/alloc_runner.go GetTaskEventHandler). The
    deprecated fields that stay zero are left out."""
    details = dict(details or {})
    if message:
        details["message"] = message
    return {
        "Type": kind,
        "Time": _now_ns(),
        "DisplayMessage": display,
        "Details": details,
        "Message": message,
        "DriverMessage": driver_message,
        "FailsTask": False,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Task:
    """One raw_exec task as a subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], kill_signal: int, kill_timeout_s: float) -> None:
        self.proc = proc
        self.kill_signal = kill_signal
        self.kill_timeout_s = kill_timeout_s

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(self.kill_signal)
            try:
                self.proc.wait(self.kill_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class NomadDouble:
    def __init__(
        self,
        *,
        nodes: list[FakeNode] | None = None,
        acl_tokens: dict[str, set[str] | None] | None = None,
        token_namespaces: dict[str, set[str]] | None = None,
        run_tasks: bool = False,
        deployment_s: float = 30.0,
        kill_timeout_cap_s: float | None = None,
        consul: Any = None,
        check_interval_cap_s: float | None = None,
        image_pull_s: float = 0.0,
        tls: tuple[Path, Path] | None = None,
        verify_https_client: bool = False,
    ) -> None:
        self.nodes = nodes if nodes is not None else [FakeNode("node-1")]
        # secret -> capabilities (None = management token). None: ACLs disabled.
        self.acl_tokens = acl_tokens
        # secret -> the namespaces its policies grant capabilities in (absent: every namespace).
        self.token_namespaces = token_namespaces or {}
        self.run_tasks = run_tasks
        self.deployment_s = deployment_s
        self.kill_timeout_cap_s = kill_timeout_cap_s
        # A tests.support.doubles.consul.ConsulDouble to register allocations' services in (run_tasks only).
        self.consul = consul
        self.check_interval_cap_s = check_interval_cap_s
        # > 0: a docker task's image is not on the node; its client "pulls" it for this long.
        self.image_pull_s = image_pull_s
        self.services: dict[str, list[str]] = {}  # alloc id -> Consul service ids
        self.lock = threading.Condition()
        self.index = 10
        self.table_index: dict[str, int] = {"jobs": 1, "allocs": 1, "evals": 1, "vars": 1}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.evals: dict[str, dict[str, Any]] = {}
        self.variables: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, path) -> variable
        self.scale_events: dict[str, list[dict[str, Any]]] = {}
        self.deployment_until: dict[str, float] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.tasks: dict[str, _Task] = {}
        # Go's map iteration order, where the reconciler's choice depends on it.
        self.random = random.Random()
        self.root = Path(tempfile.mkdtemp(prefix="nomad-double-"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # (certificate, key): serve https only, as a TLS-enabled Nomad agent does.
        self.tls = tls
        if tls is not None:
            context = server_context(*tls)
            if verify_https_client:  # tls.verify_https_client: clients present a cert of the same CA
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(tls[0])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def start(self) -> NomadDouble:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            tasks = list(self.tasks.values())
            self.tasks.clear()
        for task in tasks:
            task.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NomadDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers for tests ----------------------------------------------------------------
    def live_allocs(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                a
                for a in self.allocs.values()
                if a["JobID"] == job_id and a["DesiredStatus"] == "run" and a["ClientStatus"] in ("pending", "running")
            ]

    def variable(self, path: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.lock:
            found = self.variables.get((namespace, path))
            return None if found is None else dict(found, Items=dict(found["Items"]))

    def set_client_status(self, alloc_id: str, status: str) -> None:
        with self.lock:
            self._set_alloc(self.allocs[alloc_id], ClientStatus=status)

    # --- state changes (call with the lock held) ------------------------------------------
    def _bump(self, *tables: str) -> int:
        self.index += 1
        for table in tables:
            self.table_index[table] = self.index
        self.lock.notify_all()
        return self.index

    def _set_alloc(self, alloc: dict[str, Any], **changes: Any) -> None:
        if changes.get("ClientStatus") == "failed" and alloc["DesiredStatus"] == "run":
            self._schedule_reschedule(alloc)
        alloc.update(changes)
        alloc["ModifyIndex"] = self._bump("allocs")
        alloc["ModifyTime"] = _now_ns()
        task = alloc["TaskStates"].get("worker") if alloc["TaskStates"] else None
        if task is not None and "ClientStatus" in changes:
            status = changes["ClientStatus"]
            task["State"] = {"pending": "pending", "running": "running"}.get(status, "dead")
            task["Failed"] = status == "failed"
            if status == "running" and task["StartedAt"] is None:
                task["StartedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if status in ("complete", "failed"):
                task["FinishedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _schedule_reschedule(self, alloc: dict[str, Any]) -> None:
        """A failed allocation is rescheduled after its ReschedulePolicy's Delay (the first one:
        the double does not grow it), by a follow-up evaluation (reconcile.go
        createRescheduleLaterEvals); until then it keeps its place in the group."""
        job = self.jobs.get(alloc["JobID"])
        group = next((g for g in (job or {}).get("TaskGroups", []) if g["Name"] == alloc["TaskGroup"]), {})
        delay_s = int((group.get("ReschedulePolicy") or {}).get("Delay") or 30 * _S) / _S
        alloc["_reschedule_at"] = time.monotonic() + delay_s
        timer = threading.Timer(delay_s + 0.05, self._reschedule_due, args=(alloc["JobID"],))
        timer.daemon = True
        timer.start()

    def _reschedule_due(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs.get(job_id)
            if not self._closed and job is not None and not job.get("Stop"):
                self._reconcile(job, "alloc-failure")

    def mark_migrating(self, alloc_id: str) -> None:
        """As the node drainer does to the allocations of a draining node (DesiredTransition)."""
        with self.lock:
            self._set_alloc(self.allocs[alloc_id], DesiredTransition={"Migrate": True})

    def stop_allocation(self, alloc: dict[str, Any]) -> dict[str, Any]:
        self._set_alloc(alloc, DesiredTransition={"Migrate": True})
        job = self.jobs[alloc["JobID"]]
        ev = self._reconcile(job, "alloc-stop")
        return {"EvalID": ev["ID"], "Index": ev["ModifyIndex"]}

    def _new_eval(self, job: dict[str, Any], triggered_by: str) -> dict[str, Any]:
        index = self._bump("evals")
        ev = {
            "ID": str(uuid.uuid4()),
            "Namespace": job["Namespace"],
            "Priority": job.get("Priority", 50),
            "Type": job["Type"],
            "TriggeredBy": triggered_by,
            "JobID": job["ID"],
            "JobModifyIndex": job["JobModifyIndex"],
            "Status": "complete",
            "StatusDescription": "",
            "FailedTGAllocs": None,
            "BlockedEval": "",
            "QueuedAllocations": {},
            "CreateIndex": index,
            "ModifyIndex": index,
            "CreateTime": _now_ns(),
            "ModifyTime": _now_ns(),
        }
        self.evals[ev["ID"]] = ev
        return ev

    def _deployments_enabled(self, job: dict[str, Any]) -> bool:
        # Job.Canonicalize gives a service job the default update strategy when it has none;
        # MaxParallel 0 makes it empty, and an empty strategy creates no deployment.
        if job.get("Type", "service") != "service":
            # scheduler/generic_sched.go reads a deployment only `if !s.batch`; the sysbatch scheduler has none.
            return False
        update = job.get("Update")
        return update is None or int(update.get("MaxParallel", 1) or 0) > 0

    def _reconcile(self, job: dict[str, Any], triggered_by: str) -> dict[str, Any]:
        ev = self._new_eval(job, triggered_by)
        failed: dict[str, Any] = {}
        job["_placed"] = 0
        if job["Type"] == "sysbatch":
            self._reconcile_sysbatch(job, ev)
            job["_queued"] = {}
            self._bump("evals")
            return ev
        for group in job["TaskGroups"]:
            gname = group["Name"]
            allocs = [a for a in self.allocs.values() if a["JobID"] == job["ID"] and a["TaskGroup"] == gname]
            live = [
                a
                for a in allocs
                if a["DesiredStatus"] == "run" and a["ClientStatus"] not in ("complete", "failed", "lost")
            ]
            # A job version change is a destructive update of every allocation (no deployment).
            outdated = [a for a in live if a["JobVersion"] != job["Version"]]
            for alloc in outdated:
                self._stop_alloc(alloc, "alloc is being updated due to job update")
            live = [a for a in live if a not in outdated]
            # filters.go filterByRescheduleable: a failed allocation not yet replaced waits for its
            # delayed reschedule in the untainted set (it keeps its name and counts), or is due now.
            now = time.monotonic()
            awaiting = [
                a
                for a in allocs
                if a["DesiredStatus"] == "run"
                and a["ClientStatus"] == "failed"
                and not a["NextAllocation"]
                and a["JobVersion"] == job["Version"]
            ]
            later = [a for a in awaiting if a.get("_reschedule_at", 0.0) > now]
            due = [a for a in awaiting if a not in later]
            # filterByTainted: allocations the node drainer marked to migrate.
            migrate = [a for a in live if (a.get("DesiredTransition") or {}).get("Migrate")]
            untainted = [a for a in live if a not in migrate] + later
            count = 0 if job.get("Stop") else int(group.get("Count", 1))
            stopped = compute_stop(untainted, migrate, due, count, self.random)
            for alloc in stopped:
                self._stop_alloc(alloc, "alloc not needed due to job update")
            # computeMigrations: the rest of the migrating ones are stopped and placed anew under
            # their own names.
            migrating = [a for a in migrate if a not in stopped]
            for alloc in migrating:
                self._stop_alloc(alloc, "alloc is being migrated")
                node = self._pick_node(group)
                if node is None:
                    failed[gname] = self._failure_metric(group, 1)
                    continue
                new_id = self._place(job, group, alloc["_index"], node, ev["ID"])
                self._set_alloc(alloc, NextAllocation=new_id)
                job["_placed"] += 1
            occupying = [a for a in untainted + migrate if a not in stopped and a not in migrating]
            occupying += [self.allocs[a["NextAllocation"]] for a in migrating if a["NextAllocation"]]
            if len(occupying) < count:
                used = {a["_index"] for a in occupying}
                missing = count - len(occupying)
                # A due reschedule replaces the failed allocation under its own name.
                replaced = [a for a in due if a["_index"] not in used][:missing]
                free = [a["_index"] for a in replaced]
                used |= set(free)
                free += [i for i in range(count + len(used)) if i not in used][: missing - len(free)]
                placed = 0
                for idx in free:
                    node = self._pick_node(group)
                    if node is None:
                        break
                    new_id = self._place(job, group, idx, node, ev["ID"])
                    for alloc in replaced:
                        if alloc["_index"] == idx:
                            self._set_alloc(alloc, NextAllocation=new_id)
                    placed += 1
                    job["_placed"] += 1
                if placed < missing:
                    failed[gname] = self._failure_metric(group, missing - placed)
        if failed:
            blocked = self._new_eval(job, triggered_by)
            blocked["Status"] = "blocked"
            blocked["StatusDescription"] = "created to place remaining allocations"
            ev["FailedTGAllocs"] = failed
            ev["BlockedEval"] = blocked["ID"]
            ev["QueuedAllocations"] = {g: m["CoalescedFailures"] + 1 for g, m in failed.items()}
        job["_queued"] = {g: m["CoalescedFailures"] + 1 for g, m in failed.items()}
        self._bump("evals")
        return ev

    def _reconcile_sysbatch(self, job: dict[str, Any], ev: dict[str, Any]) -> None:
        """scheduler/scheduler_sysbatch.go (the system scheduler in sysbatch mode): one allocation
        per eligible node and group, whatever Count says, named `<job>.<group>[0]`; an allocation
        of the current job version, finished or not, is not placed again (a completed sysbatch
        allocation stays complete until the job changes), and one of an older version is replaced.
        Every node of the double is eligible (it models no node attributes or pools)."""
        for group in job["TaskGroups"]:
            for node in self.nodes:
                here = [
                    a
                    for a in self.allocs.values()
                    if a["JobID"] == job["ID"] and a["TaskGroup"] == group["Name"] and a["NodeID"] == node.id
                ]
                if job.get("Stop"):
                    for alloc in here:
                        if alloc["DesiredStatus"] == "run":
                            self._stop_alloc(alloc, "alloc not needed due to job update")
                    continue
                if any(a["JobVersion"] == job["Version"] and a["DesiredStatus"] == "run" for a in here):
                    continue
                for alloc in here:
                    if alloc["DesiredStatus"] == "run":
                        self._stop_alloc(alloc, "alloc is being updated due to job update")
                self._place(job, group, 0, node, ev["ID"])
                job["_placed"] += 1

    def _device_fits(self, node: FakeNode, request: dict[str, Any], used: dict[tuple[str, str, str], int]) -> bool:
        want = int(request.get("Count", 1))
        vendor_type = str(request["Name"]).split("/")
        for key, total in node.devices.items():
            vendor, dtype, model = key
            if len(vendor_type) == 2 and (vendor, dtype) != tuple(vendor_type):
                continue
            if len(vendor_type) == 1 and dtype != vendor_type[0]:
                continue
            if total - used.get(key, 0) < want:
                continue
            if all(self._device_constraint(c, model) for c in request.get("Constraints") or []):
                return True
        return False

    @staticmethod
    def _device_constraint(constraint: dict[str, Any], model: str) -> bool:
        if constraint.get("LTarget") != "${device.model}":
            return True
        operand, rtarget = constraint.get("Operand", "="), str(constraint.get("RTarget", ""))
        if operand in ("=", "==", "is"):
            return model == rtarget
        if operand == "set_contains_any":
            return model.strip() in {r.strip() for r in rtarget.split(",")}
        if operand == "regexp":
            return re.search(rtarget, model) is not None
        return False

    def _pick_node(self, group: dict[str, Any]) -> FakeNode | None:
        requests = [d for task in group["Tasks"] for d in ((task.get("Resources") or {}).get("Devices") or [])]
        for node in self.nodes:
            used: dict[tuple[str, str, str], int] = {}
            for alloc in self.allocs.values():
                if alloc["NodeID"] == node.id and alloc["DesiredStatus"] == "run":
                    for key, n in alloc["_devices"].items():
                        used[key] = used.get(key, 0) + n
            if all(self._device_fits(node, r, used) for r in requests):
                return node
        return None

    def _failure_metric(self, group: dict[str, Any], missing: int) -> dict[str, Any]:
        n = len(self.nodes)
        # api/allocations.go AllocationMetric, as Evaluation.FailedTGAllocs carries it.
        return {
            "NodesEvaluated": n,
            "NodesFiltered": n,
            "NodesInPool": n,
            "NodesAvailable": {"dc1": n},
            "ClassFiltered": None,
            "ConstraintFiltered": {"missing devices": n} if n else None,
            "NodesExhausted": 0,
            "ClassExhausted": None,
            "DimensionExhausted": None,
            "QuotaExhausted": None,
            "ResourcesExhausted": None,
            "Scores": None,
            "ScoreMetaData": None,
            "AllocationTime": 51234,
            "CoalescedFailures": missing - 1,
        }

    def _place(self, job: dict[str, Any], group: dict[str, Any], idx: int, node: FakeNode, eval_id: str) -> str:
        alloc_id = str(uuid.uuid4())
        task = group["Tasks"][0]
        ports = []
        for network in group.get("Networks") or []:
            for port in network.get("DynamicPorts") or []:
                ports.append(
                    {"Label": port["Label"], "Value": _free_port(), "To": port.get("To", 0), "HostIP": "127.0.0.1"}
                )
        devices: dict[tuple[str, str, str], int] = {}
        for request in (task.get("Resources") or {}).get("Devices") or []:
            for key in node.devices:
                if self._device_constraint((request.get("Constraints") or [{}])[0], key[2]):
                    devices[key] = devices.get(key, 0) + int(request.get("Count", 1))
                    break
        index = self._bump("allocs")
        alloc: dict[str, Any] = {
            "ID": alloc_id,
            "EvalID": eval_id,
            "Name": f"{job['ID']}.{group['Name']}[{idx}]",
            "Namespace": job["Namespace"],
            "NodeID": node.id,
            "NodeName": node.name,
            "JobID": job["ID"],
            "JobType": job["Type"],
            "JobVersion": job["Version"],
            "TaskGroup": group["Name"],
            "AllocatedResources": None,
            "DesiredStatus": "run",
            "DesiredDescription": "",
            "ClientStatus": "pending",
            "ClientDescription": "No tasks have started",
            "TaskStates": {
                task["Name"]: {
                    "State": "pending",
                    "Failed": False,
                    "Restarts": 0,
                    "LastRestart": None,
                    "StartedAt": None,
                    "FinishedAt": None,
                    "Events": [],
                }
            },
            "DeploymentStatus": None,
            "FollowupEvalID": "",
            "NextAllocation": "",
            "RescheduleTracker": None,
            "PreemptedAllocations": None,
            "PreemptedByAllocation": "",
            "CreateIndex": index,
            "ModifyIndex": index,
            "CreateTime": _now_ns(),
            "ModifyTime": _now_ns(),
            # Not part of the API: kept for the scheduler and the task runner.
            "_index": idx,
            "_ports": ports,
            "_devices": devices,
        }
        self.allocs[alloc_id] = alloc
        threading.Thread(target=self._start_alloc, args=(alloc_id, job, task), daemon=True).start()
        return alloc_id

    def _start_alloc(self, alloc_id: str, job: dict[str, Any], task: dict[str, Any]) -> None:
        time.sleep(0.02)  # the client picks the allocation up a moment later
        with self.lock:
            alloc = self.allocs.get(alloc_id)
            if alloc is None or alloc["DesiredStatus"] != "run" or self._closed:
                return
            events = alloc["TaskStates"][task["Name"]]["Events"]
            # client/allocrunner/taskrunner: task_runner.go Run appends Received, task_dir_hook.go
            # emits Task Setup "Building Task Directory".
            events.append(task_event("Received", "Task received by client"))
            events.append(task_event("Task Setup", "Building Task Directory", message="Building Task Directory"))
            pull = task["Driver"] == "docker" and self.image_pull_s > 0
            if pull:
                # drivers/docker/driver.go pullImage emits "Downloading image" before pulling (only
                # when the image is not on the node); alloc_runner.go GetTaskEventHandler turns a
                # driver's event into a "Driver" TaskEvent with DriverMessage and the annotations.
                image = str((task.get("Config") or {}).get("image", ""))
                events.append(
                    task_event(
                        "Driver", "Downloading image", driver_message="Downloading image", details={"image": image}
                    )
                )
                self._bump("allocs")
        if pull:
            time.sleep(self.image_pull_s)
        with self.lock:
            if alloc["DesiredStatus"] != "run":
                return
            if job["Type"] == "sysbatch":
                # The double runs no image: the pre-pull task (entry point `true`) runs and exits 0.
                events.append(task_event("Started", "Task started by client"))
                self._set_alloc(alloc, ClientStatus="running", ClientDescription="Tasks are running")
                self._set_alloc(alloc, ClientStatus="complete", ClientDescription="All tasks have completed")
                return
            if not self.run_tasks:
                events.append(task_event("Started", "Task started by client"))
                self._set_alloc(alloc, ClientStatus="running", ClientDescription="Tasks are running")
                return
            task_dir = self._task_dir(alloc, task)
            try:
                template_env = self._render_templates(alloc, job, task, task_dir)
            except _TemplateError as err:
                self._fail_task(alloc, task, f"Template failed: {err}")
                return
        proc = self._spawn(alloc, job, task, template_env)
        with self.lock:
            if alloc["DesiredStatus"] != "run":
                proc.kill()
                proc.wait()
                return
            kill_timeout = int(task.get("KillTimeout") or 5_000_000_000) / 1e9
            if self.kill_timeout_cap_s is not None:
                kill_timeout = min(kill_timeout, self.kill_timeout_cap_s)
            sig = getattr(signal, str(task.get("KillSignal") or "SIGINT"), signal.SIGINT)
            self.tasks[alloc_id] = _Task(proc, sig, kill_timeout)
            # task_runner.go runDriver: UpdateState(running, TaskStarted) once the driver started it.
            events.append(task_event("Started", "Task started by client"))
            self._set_alloc(alloc, ClientStatus="running", ClientDescription="Tasks are running")
            self._register_services(alloc, job)
        threading.Thread(target=self._reap, args=(alloc_id, proc), daemon=True).start()

    def _register_services(self, alloc: dict[str, Any], job: dict[str, Any]) -> None:
        if self.consul is None:
            return
        group: dict[str, Any] = next((g for g in job["TaskGroups"] if g["Name"] == alloc["TaskGroup"]), {})
        ports = {p["Label"]: p["Value"] for p in alloc["_ports"]}
        for service in group.get("Services") or []:
            if service.get("Provider", "consul") != "consul" or service.get("PortLabel") not in ports:
                continue
            port = int(ports[service["PortLabel"]])
            service_id = f"_nomad-task-{alloc['ID']}-group-{group['Name']}-{service['Name']}-{service['PortLabel']}"
            checks = [c for c in service.get("Checks") or [] if c.get("Type") == "http"]
            status = "critical" if checks else "passing"
            self.consul.register(service["Name"], service_id, port, address="127.0.0.1", status=status)
            self.services.setdefault(alloc["ID"], []).append(service_id)
            for check in checks:
                # A check's own PortLabel overrides the service's (api/services.go ServiceCheck).
                check_port = int(ports.get(check.get("PortLabel") or service["PortLabel"], port))
                threading.Thread(
                    target=self._run_check, args=(alloc["ID"], service_id, check_port, check), daemon=True
                ).start()

    def _run_check(self, alloc_id: str, service_id: str, port: int, check: dict[str, Any]) -> None:
        interval = int(check.get("Interval") or 10_000_000_000) / 1e9
        if self.check_interval_cap_s is not None:
            interval = min(interval, self.check_interval_cap_s)
        timeout = int(check.get("Timeout") or 2_000_000_000) / 1e9
        url = f"http://127.0.0.1:{port}{check.get('Path') or '/'}"
        last = "critical"
        while not self._closed:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    code = resp.status
            except urllib.error.HTTPError as err:
                code = err.code
            except OSError:
                code = 0
            status = "passing" if 200 <= code < 300 else "warning" if code == 429 else "critical"
            with self.lock:
                if service_id not in self.services.get(alloc_id, []):
                    return  # deregistered: the allocation is stopping
                if status != last:
                    self.consul.set_status(service_id, status)
                    last = status
            time.sleep(interval)

    def _deregister_services(self, alloc_id: str) -> None:
        for service_id in self.services.pop(alloc_id, []):
            if self.consul is not None:
                self.consul.deregister(service_id)

    def _render_templates(
        self, alloc: dict[str, Any], job: dict[str, Any], task: dict[str, Any], task_dir: Path
    ) -> dict[str, str]:
        """Each template into its DestPath; returns the env its `KEY=value` lines give."""
        namespace = job["Namespace"]
        own = f"nomad/jobs/{job['ID']}"
        readable = {"nomad/jobs", own, f"{own}/{alloc['TaskGroup']}", f"{own}/{alloc['TaskGroup']}/{task['Name']}"}
        env: dict[str, str] = {}
        for template in task.get("Templates") or []:
            text = str(template.get("EmbeddedTmpl") or "")
            match = _NOMAD_VAR_TMPL.match(text)
            lines = [line.strip() for line in match["body"].splitlines() if line.strip()] if match else []
            parsed = [_ENV_LINE.match(line) for line in lines]
            if not template.get("Envvars") or match is None or not parsed or not all(parsed):
                raise _TemplateError(
                    'the Nomad double renders only env templates (Envvars: true) of the form {{ with nomadVar "PATH" }}'
                    f"KEY={{{{ .item }}}}{{{{ end }}}}, not {text!r} (Envvars={template.get('Envvars')!r})"
                )
            dest = Path(str(template.get("DestPath") or ""))
            if dest.is_absolute() or ".." in dest.parts or not dest.parts:
                raise _TemplateError(f"the Nomad double renders only inside the task directory, not {str(dest)!r}")
            path = match["path"]
            block = f"nomad.var.block({path}@{namespace}.{job.get('Region') or 'global'})"
            if path not in readable:
                raise _TemplateError(f"{block}: Permission denied")
            variable = self.variables.get((namespace, path))
            if variable is None:
                raise _TemplateError(f"Missing: {block}")
            rendered = {}
            for line in parsed:
                assert line is not None
                item = line["item"]
                if item not in variable["Items"]:
                    # Nomad passes ErrMissingKey to consul-template (client/allocrunner/taskrunner/
                    # template/template.go parseTemplateConfigs: ct.ErrMissingKey), which runs Go's
                    # text/template with missingkey=error when it is set: the render fails with
                    # text/template's "map has no entry for key" (exec.go evalField); unset, a missing
                    # map key prints "<no value>" (text/template's default missingkey behaviour).
                    if template.get("ErrMissingKey"):
                        raise _TemplateError(f'{block}: executing "" at <.{item}>: map has no entry for key "{item}"')
                    rendered[line["key"]] = "<no value>"
                    continue
                rendered[line["key"]] = str(variable["Items"][item])
            target = task_dir / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"{k}={v}\n" for k, v in rendered.items()))
            target.chmod(int(str(template.get("Perms") or "0644"), 8))
            env.update(rendered)
        return env

    def _fail_task(self, alloc: dict[str, Any], task: dict[str, Any], message: str) -> None:
        # api/tasks.go TaskEvent; Nomad kills a task whose template fails with this display message.
        event = {
            "Type": "Killing",
            "Time": _now_ns(),
            "DisplayMessage": message,
            "Message": message,
            "Details": {"fails_task": "true", "kill_reason": message},
            "FailsTask": True,
            "KillReason": message,
        }
        alloc["TaskStates"][task["Name"]]["Events"].append(event)
        self._set_alloc(alloc, ClientStatus="failed", ClientDescription="Failed tasks")

    def task_env(
        self,
        alloc: dict[str, Any],
        job: dict[str, Any],
        task: dict[str, Any],
        task_dir: Path,
        template_env: dict[str, str] | None = None,
    ) -> dict[str, str]:
        nomad_env = {
            "NOMAD_ALLOC_ID": alloc["ID"],
            "NOMAD_SHORT_ALLOC_ID": alloc["ID"][:8],
            "NOMAD_ALLOC_NAME": alloc["Name"],
            "NOMAD_ALLOC_INDEX": str(alloc["_index"]),
            "NOMAD_JOB_ID": job["ID"],
            "NOMAD_JOB_NAME": job["Name"],
            "NOMAD_GROUP_NAME": alloc["TaskGroup"],
            "NOMAD_TASK_NAME": task["Name"],
            "NOMAD_NAMESPACE": job["Namespace"],
            "NOMAD_REGION": job.get("Region") or "global",
            "NOMAD_DC": "dc1",
            "NOMAD_ALLOC_DIR": str(task_dir.parent / "alloc"),
            "NOMAD_TASK_DIR": str(task_dir / "local"),
            "NOMAD_SECRETS_DIR": str(task_dir / "secrets"),
            "NOMAD_CPU_LIMIT": str((task.get("Resources") or {}).get("CPU", 100)),
            "NOMAD_MEMORY_LIMIT": str((task.get("Resources") or {}).get("MemoryMB", 300)),
        }
        for port in alloc["_ports"]:
            label, value = port["Label"], str(port["Value"])
            nomad_env.update(
                {
                    f"NOMAD_PORT_{label}": value,
                    f"NOMAD_IP_{label}": "127.0.0.1",
                    f"NOMAD_ADDR_{label}": f"127.0.0.1:{value}",
                    f"NOMAD_HOST_PORT_{label}": value,
                    f"NOMAD_HOST_IP_{label}": "127.0.0.1",
                    f"NOMAD_HOST_ADDR_{label}": f"127.0.0.1:{value}",
                    f"NOMAD_ALLOC_PORT_{label}": value,
                }
            )
        for key, value in (job.get("Meta") or {}).items():
            nomad_env[f"NOMAD_META_{key}"] = str(value)

        def interpolate(text: str) -> str:
            return re.sub(r"\$\{([A-Za-z0-9_.]+)\}", lambda m: nomad_env.get(m.group(1), m.group(0)), text)

        # raw_exec tasks inherit the agent's environment.
        env = dict(os.environ)
        env.update(nomad_env)
        for key, value in (task.get("Env") or {}).items():
            env[key] = interpolate(str(value))
        # Template env is taken as rendered (not interpolated) and wins over Env.
        env.update(template_env or {})
        return env

    def _task_dir(self, alloc: dict[str, Any], task: dict[str, Any]) -> Path:
        task_dir = self.root / alloc["ID"] / task["Name"]
        for sub in ("local", "secrets", "tmp"):
            (task_dir / sub).mkdir(parents=True, exist_ok=True)
        return task_dir

    def _spawn(
        self, alloc: dict[str, Any], job: dict[str, Any], task: dict[str, Any], template_env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        if task["Driver"] != "raw_exec":
            raise RuntimeError(f"the Nomad double runs raw_exec tasks only, not {task['Driver']!r}")
        task_dir = self._task_dir(alloc, task)
        logs = self.root / alloc["ID"] / "alloc" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        config = task.get("Config") or {}
        argv = [str(config["command"]), *[str(a) for a in config.get("args") or []]]
        env = self.task_env(alloc, job, task, task_dir, template_env)
        with (
            # A restarted task appends to the same files, as Nomad's logmon keeps them.
            (logs / f"{task['Name']}.stdout.0").open("ab") as out,
            (logs / f"{task['Name']}.stderr.0").open("ab") as err,
        ):
            return subprocess.Popen(argv, cwd=task_dir, env=env, stdout=out, stderr=err, start_new_session=True)

    def serve_logs(self, handler: BaseHTTPRequestHandler, alloc_id: str, query: dict[str, str]) -> None:
        """`GET /v1/client/fs/logs/:alloc_id`, transcribed from hashicorp/nomad (main, 2026):
        command/agent/fs_endpoint.go HTTPServer.Logs checks the query (400s: "must provide task
        name", "failed to parse follow/plain field to boolean", "must provide log type
        (stdout/stderr)", "origin must be start or end"; follow and plain default to false,
        origin to start) and sets Content-Type text/plain or application/json by `plain`;
        client/fs_endpoint.go FileSystem.logs answers 404 `Unknown allocation "<id>"`, 400
        `unknown task name "<task>"` and 404 `task "<task>" not started yet. No logs available`;
        logsImpl streams alloc/logs/<task>.<type>.N from `offset` (counted back from the end
        for origin=end), as raw bytes when plain, else as JSON StreamFrames {Offset, Data
        (base64), File}, and with follow keeps the answer open until the task is dead and its
        output read. ACL checks (read-logs) are not modelled: no test here runs with ACLs."""

        def fail(status: int, text: str) -> None:
            data = text.encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        task = query.get("task", "")
        if not alloc_id:
            return fail(400, "must provide a valid alloc id")
        if not task:
            return fail(400, "must provide task name")
        flags = {}
        for name in ("follow", "plain"):
            raw = query.get(name, "")
            if raw and raw not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
                return fail(
                    400, f'failed to parse {name} field to boolean: strconv.ParseBool: parsing "{raw}": invalid syntax'
                )
            flags[name] = _go_bool(raw)
        log_type = query.get("type", "")
        if log_type not in ("stdout", "stderr"):
            return fail(400, "must provide log type (stdout/stderr)")
        try:
            offset = int(query.get("offset") or 0)
        except ValueError:
            return fail(400, f'error parsing offset: strconv.ParseInt: parsing "{query["offset"]}": invalid syntax')
        origin = query.get("origin") or "start"
        if origin not in ("start", "end"):
            return fail(400, "origin must be start or end")
        with self.lock:
            alloc = self.allocs.get(alloc_id)
        if alloc is None:
            return fail(404, f'Unknown allocation "{alloc_id}"')
        path = self.root / alloc_id / "alloc" / "logs" / f"{task}.{log_type}.0"
        if not path.exists():
            tasks = {t["Name"] for g in alloc.get("Job", {}).get("TaskGroups", []) for t in g.get("Tasks", [])}
            if tasks and task not in tasks:
                return fail(400, f'unknown task name "{task}"')
            return fail(404, f'task "{task}" not started yet. No logs available')
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain" if flags["plain"] else "application/json")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        position = max(0, path.stat().st_size - offset) if origin == "end" else offset
        name = f"alloc/logs/{task}.{log_type}.0"
        try:
            with path.open("rb") as source:
                while True:
                    source.seek(position)
                    data = source.read()
                    if data:
                        position += len(data)
                        if flags["plain"]:
                            handler.wfile.write(data)
                        else:
                            frame = {"Offset": position, "Data": base64.b64encode(data).decode(), "File": name}
                            handler.wfile.write(json.dumps(frame).encode())
                        handler.wfile.flush()
                        continue
                    with self.lock:
                        running = alloc_id in self.tasks
                    if not flags["follow"] or not running:
                        return
                    time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_text(self, alloc_id: str, stream: str = "stderr") -> str:
        path = self.root / alloc_id / "alloc" / "logs" / f"worker.{stream}.0"
        return path.read_text(errors="replace") if path.exists() else ""

    def _reap(self, alloc_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self.lock:
            alloc = self.allocs.get(alloc_id)
            self.tasks.pop(alloc_id, None)
            self._deregister_services(alloc_id)
            if alloc is None or alloc["ClientStatus"] not in ("pending", "running"):
                return
            if code != 0 and alloc["DesiredStatus"] == "run" and self._restart_failed_task(alloc, code):
                return
            status = "complete" if code == 0 or alloc["DesiredStatus"] != "run" else "failed"
            self._set_alloc(alloc, ClientStatus=status, ClientDescription=f"Task exited with code {code}")

    def _restart_failed_task(self, alloc: dict[str, Any], code: int) -> bool:
        """A task that exited non-zero, as Nomad's task runner handles it: a "Terminated" event
        with the ExitCode (task_runner.go emitExitResultEvent), then the group's RestartPolicy
        (client/allocrunner/taskrunner/restarts/restarts.go RestartTracker.GetState): within
        Attempts per Interval a "Restarting" event ("Restart within policy") after Delay plus up
        to 25% jitter; past them, mode "delay" waits for the interval's end ("Exceeded allowed
        attempts, applying a delay") and mode "fail" (or Attempts 0) emits "Not Restarting" and
        fails the task (task_runner.go shouldRestart). A "Restarting" event counts in
        TaskState.Restarts and LastRestart (task_runner.go appendEvent). Returns False when the
        allocation fails. Not modelled: a service task that exits 0 is restarted too in Nomad
        (onSuccess); here it completes."""
        job = self.jobs.get(alloc["JobID"]) or {}
        group = next((g for g in job.get("TaskGroups", []) if g["Name"] == alloc["TaskGroup"]), {})
        task = group["Tasks"][0]
        state = alloc["TaskStates"][task["Name"]]
        now = _now_ns()
        state["Events"].append(
            {
                "Type": "Terminated",
                "Time": now,
                "DisplayMessage": f"Exit Code: {code}",
                "Message": "",
                "Details": {"exit_code": str(code), "signal": "0", "oom_killed": "false"},
                "FailsTask": False,
                "RestartReason": "",
                "ExitCode": code,
                "Signal": 0,
                "StartDelay": 0,
            }
        )
        policy = group.get("RestartPolicy") or {}
        attempts = int(policy.get("Attempts") or 0)
        interval = int(policy.get("Interval") or 0)
        delay = int(policy.get("Delay") or 0)
        if now > alloc.get("_restart_window", 0) + interval:
            alloc["_restart_window"], alloc["_restart_count"] = now, 0
        alloc["_restart_count"] = alloc.get("_restart_count", 0) + 1
        if attempts == 0 or (alloc["_restart_count"] > attempts and policy.get("Mode") == "fail"):
            reason = (
                "Policy allows no restarts"
                if attempts == 0
                else f'Exceeded allowed attempts {attempts} in interval {go_duration(interval)} and mode is "fail"'
            )
            state["Events"].append(
                {
                    "Type": "Not Restarting",
                    "Time": _now_ns(),
                    "DisplayMessage": reason,
                    "Message": "",
                    "Details": {"restart_reason": reason, "fails_task": "true"},
                    "FailsTask": True,
                    "RestartReason": reason,
                    "ExitCode": 0,
                    "Signal": 0,
                    "StartDelay": 0,
                }
            )
            return False
        if alloc["_restart_count"] > attempts:
            reason = "Exceeded allowed attempts, applying a delay"
            wait_ns = alloc["_restart_window"] + interval - now
        else:
            reason = "Restart within policy"
            wait_ns = max(delay, 1) + int(random.randrange(max(delay, 1)) * 0.25)
        event_time = _now_ns()
        state["Events"].append(
            {
                "Type": "Restarting",
                "Time": event_time,
                # nomad/structs/structs.go TaskEvent.PopulateEventDisplayMessage
                "DisplayMessage": f"Task restarting in {go_duration(wait_ns)}"
                if reason == "Restart within policy"
                else f"{reason} - Task restarting in {go_duration(wait_ns)}",
                "Message": "",
                "Details": {"restart_reason": reason, "start_delay": str(wait_ns)},
                "FailsTask": False,
                "RestartReason": reason,
                "ExitCode": 0,
                "Signal": 0,
                "StartDelay": wait_ns,
            }
        )
        state["Restarts"] = int(state.get("Restarts") or 0) + 1
        state["LastRestart"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event_time / _S))
        self._set_alloc(alloc, ClientStatus="pending", ClientDescription="No tasks have started")
        timer = threading.Timer(wait_ns / _S, self._start_alloc, args=(alloc["ID"], job, task))
        timer.daemon = True
        timer.start()
        return True

    def _stop_alloc(self, alloc: dict[str, Any], why: str) -> None:
        self._set_alloc(alloc, DesiredStatus="stop", DesiredDescription=why)
        self._deregister_services(alloc["ID"])
        task = self.tasks.get(alloc["ID"])
        if task is None:
            if alloc["ClientStatus"] in ("pending", "running"):
                self._set_alloc(alloc, ClientStatus="complete", ClientDescription="All tasks have completed")
            return
        threading.Thread(target=task.stop, daemon=True).start()  # the reaper records the exit

    # --- ACL ------------------------------------------------------------------------------
    def _allowed(self, token: str | None, capability: str, namespace: str = "default") -> bool:
        try:
            self._authorize(token, capability, namespace)
        except HttpError:
            return False
        return True

    def _authorize(self, token: str | None, capability: str, namespace: str = "default") -> None:
        """Capabilities are granted per namespace (acl/acl.go AllowNamespaceOperation): a check is
        made against the namespace the request names (`?namespace=`, "default" without one)."""
        if self.acl_tokens is None:
            return
        if not token:
            raise HttpError(403, "Permission denied")
        if token not in self.acl_tokens:
            raise HttpError(403, "ACL token not found")
        caps = self.acl_tokens[token]
        if caps is not None and capability not in caps:
            raise HttpError(403, "Permission denied")
        scoped = self.token_namespaces.get(token)
        if caps is not None and scoped is not None and namespace not in scoped:
            raise HttpError(403, "Permission denied")

    # --- handlers -------------------------------------------------------------------------
    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise HttpError(404, "job not found")
        return job

    def _public(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _validate(self, job: dict[str, Any]) -> None:
        validate_job(job)

    def register(self, body: dict[str, Any], namespace: str) -> dict[str, Any]:
        job = dict(body.get("Job") or {})
        job.setdefault("Namespace", namespace)
        job.setdefault("Type", "service")
        job.setdefault("Name", job.get("ID"))
        job.setdefault("Priority", 50)
        with self.lock:
            existing = self.jobs.get(job.get("ID", ""))
            self._validate(job)
            # nomad/job_endpoint.go Register (v1.9.7): counts are preserved after the admission
            # controllers validated the submitted job, so a preserved count outside a changed
            # scaling policy is kept without complaint.
            if existing is not None and body.get("PreserveCounts"):
                old = {g["Name"]: g["Count"] for g in existing["TaskGroups"]}
                for group in job.get("TaskGroups") or []:
                    if group["Name"] in old:
                        group["Count"] = old[group["Name"]]
            index = self._bump("jobs")
            spec_keys = ("TaskGroups", "Update", "Meta", "Datacenters", "NodePool")
            if existing is None:
                job.update(CreateIndex=index, Version=0, SubmitTime=_now_ns())
            else:
                job["CreateIndex"] = existing["CreateIndex"]
                same = all(_strip_counts(existing.get(k)) == _strip_counts(job.get(k)) for k in spec_keys)
                job["Version"] = existing["Version"] + (0 if same else 1)
            job.update(ModifyIndex=index, JobModifyIndex=index, Status="running", Stop=False)
            self.jobs[job["ID"]] = job
            ev = self._reconcile(job, "job-register")
            # A deployment tracks placements; a registration that places nothing starts none.
            if self._deployments_enabled(job) and job["_placed"]:
                self.deployment_until[job["ID"]] = time.monotonic() + self.deployment_s
            return {
                "EvalID": ev["ID"],
                "EvalCreateIndex": ev["CreateIndex"],
                "JobModifyIndex": index,
                "Warnings": "",
                "Index": index,
                "LastContact": 0,
                "KnownLeader": False,
            }

    def scale(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id)
            group_name = (body.get("Target") or {}).get("Group")
            group = next((g for g in job["TaskGroups"] if g["Name"] == group_name), None)
            if group is None:
                raise HttpError(400, f"task group {group_name!r} specified for scaling does not exist in job")
            count = body.get("Count")
            if count is not None:
                scaling = group.get("Scaling")
                if scaling is not None:
                    if count < scaling.get("Min", 0):
                        raise HttpError(
                            400, f"group count was less than scaling policy minimum: {count} < {scaling.get('Min', 0)}"
                        )
                    if scaling.get("Max", 0) < count:
                        raise HttpError(
                            400,
                            f"group count was greater than scaling policy maximum: {count} > {scaling.get('Max', 0)}",
                        )
                if self.deployment_until.get(job_id, 0) > time.monotonic():
                    raise HttpError(400, "job scaling blocked due to active deployment")
                previous = group["Count"]
                group["Count"] = int(count)
                index = self._bump("jobs")
                job.update(ModifyIndex=index, JobModifyIndex=index, Version=job["Version"] + 1)
                # Scaling keeps the allocations: they are not outdated by the version bump.
                for alloc in self.allocs.values():
                    if alloc["JobID"] == job_id and alloc["DesiredStatus"] == "run":
                        alloc["JobVersion"] = job["Version"]
                ev = self._reconcile(job, "job-scaling")
                if self._deployments_enabled(job) and job["_placed"]:
                    self.deployment_until[job_id] = time.monotonic() + self.deployment_s
                self.scale_events.setdefault(job_id, []).append(
                    {
                        "Count": count,
                        "PreviousCount": previous,
                        "Message": body.get("Message", ""),
                        "Error": bool(body.get("Error")),
                        "Meta": body.get("Meta"),
                        "EvalID": ev["ID"],
                        "Time": _now_ns(),
                    }
                )
                return {
                    "EvalID": ev["ID"],
                    "EvalCreateIndex": ev["CreateIndex"],
                    "JobModifyIndex": index,
                    "Warnings": "",
                    "Index": index,
                    "LastContact": 0,
                    "KnownLeader": False,
                }
            index = self._bump("jobs")
            return {
                "EvalID": "",
                "EvalCreateIndex": 0,
                "JobModifyIndex": job["JobModifyIndex"],
                "Warnings": "",
                "Index": index,
                "LastContact": 0,
                "KnownLeader": False,
            }

    def scale_status(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        groups = {}
        for group in job["TaskGroups"]:
            allocs = [
                a
                for a in self.allocs.values()
                if a["JobID"] == job_id and a["TaskGroup"] == group["Name"] and a["DesiredStatus"] == "run"
            ]
            running = sum(1 for a in allocs if a["ClientStatus"] == "running")
            groups[group["Name"]] = {
                "Desired": group["Count"],
                "Placed": len(allocs),
                "Running": running,
                "Healthy": running,
                "Unhealthy": 0,
                "Events": [
                    {
                        "Time": e["Time"],
                        "Count": e["Count"],
                        "PreviousCount": e["PreviousCount"],
                        "Message": e["Message"],
                        "Error": e["Error"],
                        "Meta": e["Meta"],
                        "EvalID": e["EvalID"],
                    }
                    for e in reversed(self.scale_events.get(job_id, []))
                ],
            }
        return {
            "JobID": job_id,
            "Namespace": job["Namespace"],
            "JobCreateIndex": job["CreateIndex"],
            "JobModifyIndex": job["JobModifyIndex"],
            "JobStopped": bool(job.get("Stop")),
            "TaskGroups": groups,
        }

    def summary(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        out = {}
        for group in job["TaskGroups"]:
            allocs = [a for a in self.allocs.values() if a["JobID"] == job_id and a["TaskGroup"] == group["Name"]]

            def n(status: str, allocs: list[dict[str, Any]] = allocs) -> int:
                return sum(1 for a in allocs if a["ClientStatus"] == status)

            out[group["Name"]] = {
                "Queued": job.get("_queued", {}).get(group["Name"], 0),
                "Complete": n("complete"),
                "Failed": n("failed"),
                "Running": n("running"),
                "Starting": n("pending"),
                "Lost": n("lost"),
                "Unknown": n("unknown"),
            }
        return {
            "JobID": job_id,
            "Namespace": job["Namespace"],
            "Summary": out,
            "Children": None,
            "CreateIndex": job["CreateIndex"],
            "ModifyIndex": job["ModifyIndex"],
        }

    def deregister(self, job_id: str, purge: bool) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id)
            job["Stop"] = True
            index = self._bump("jobs")
            ev = self._reconcile(job, "job-deregister")
            if purge:
                del self.jobs[job_id]
                self._bump("jobs")
            else:
                job.update(Status="dead", ModifyIndex=index)
            return {
                "EvalID": ev["ID"],
                "EvalCreateIndex": ev["CreateIndex"],
                "JobModifyIndex": index,
                "Index": index,
                "LastContact": 0,
                "KnownLeader": False,
            }

    def _cas(self, query: dict[str, str]) -> int | None:
        if "cas" not in query or query["cas"] == "":
            return None
        try:
            return int(query["cas"])
        except ValueError:
            raise HttpError(
                400, f'can not parse cas: strconv.ParseUint: parsing "{query["cas"]}": invalid syntax'
            ) from None

    def _conflict(self, namespace: str, path: str, token: str | None) -> tuple[int, Any, str]:
        current = self.variables.get((namespace, path))
        # A cas index on an absent variable conflicts with "a plausible zero value".
        body = dict(current) if current else {"Namespace": namespace, "Path": path, "CreateIndex": 0, "ModifyIndex": 0}
        if not self._allowed(token, "variables:read", namespace):
            body.pop("Items", None)
        return 409, body, "vars"

    def put_variable(
        self, path: str, body: dict[str, Any], namespace: str, cas: int | None, token: str | None
    ) -> tuple[int, Any, str]:
        if not _VAR_PATH.match(path):
            raise HttpError(400, f"invalid path {path!r}")
        items = body.get("Items")
        if not items:
            raise HttpError(400, "variable missing required Items object")
        if not isinstance(items, dict) or not all(isinstance(v, str) for v in items.values()):
            raise HttpError(400, "json: cannot unmarshal Items: values must be strings")
        existing = self.variables.get((namespace, path))
        if cas is not None and (
            (cas == 0 and existing is not None) or (cas != 0 and (existing is None or existing["ModifyIndex"] != cas))
        ):
            return self._conflict(namespace, path, token)
        if existing is not None and existing["Items"] == items:
            return 200, dict(existing), "vars"  # unchanged: not written, ModifyIndex kept
        index = self._bump("vars")
        now = _now_ns()
        variable = {
            "Namespace": namespace,
            "Path": path,
            "CreateIndex": existing["CreateIndex"] if existing else index,
            "ModifyIndex": index,
            "CreateTime": existing["CreateTime"] if existing else now,
            "ModifyTime": now,
            "Items": dict(items),
        }
        self.variables[(namespace, path)] = variable
        return 200, dict(variable), "vars"

    def delete_variable(self, path: str, namespace: str, cas: int | None, token: str | None) -> tuple[int, Any, str]:
        existing = self.variables.get((namespace, path))
        if cas is not None and (
            (cas == 0 and existing is not None) or (cas != 0 and (existing is None or existing["ModifyIndex"] != cas))
        ):
            return self._conflict(namespace, path, token)
        if existing is not None:
            del self.variables[(namespace, path)]
            self._bump("vars")
        return 204, None, "vars"

    def list_variables(self, namespace: str, prefix: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in var.items() if k != "Items"}
            for (ns, path), var in sorted(self.variables.items())
            if (namespace == "*" or ns == namespace) and path.startswith(prefix)
        ]

    def list_jobs(self, prefix: str, meta: bool) -> list[dict[str, Any]]:
        stubs = []
        for job in sorted(self.jobs.values(), key=lambda j: j["ID"]):
            if not job["ID"].startswith(prefix):
                continue
            stub = {
                "ID": job["ID"],
                "ParentID": "",
                "Name": job["Name"],
                "Namespace": job["Namespace"],
                "Datacenters": job.get("Datacenters"),
                "Type": job["Type"],
                "Priority": job["Priority"],
                "Periodic": False,
                "ParameterizedJob": False,
                "Stop": job["Stop"],
                "Status": job["Status"],
                "StatusDescription": "",
                "JobSummary": self.summary(job["ID"]),
                "CreateIndex": job["CreateIndex"],
                "ModifyIndex": job["ModifyIndex"],
                "JobModifyIndex": job["JobModifyIndex"],
                "SubmitTime": job.get("SubmitTime", 0),
            }
            if meta:
                stub["Meta"] = job.get("Meta")
            stubs.append(stub)
        return stubs

    def route(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None, token: str | None
    ) -> tuple[int, Any, str]:
        """Returns (status, json body or text, table whose index goes in X-Nomad-Index)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        namespace = query.get("namespace", "default")
        if parts[:2] == ["v1", "jobs"] and len(parts) == 2:
            if method in ("PUT", "POST"):
                self._authorize(token, "submit-job", namespace)
                return 200, self.register(body or {}, namespace), "jobs"
            self._authorize(token, "read-job", namespace)
            return 200, self.list_jobs(query.get("prefix", ""), _go_bool(query.get("meta"))), "jobs"
        if parts[:2] == ["v1", "job"] and len(parts) >= 3:
            job_id, rest = parts[2], parts[3:]
            if not rest:
                if method == "DELETE":
                    self._authorize(token, "submit-job", namespace)
                    return 200, self.deregister(job_id, _go_bool(query.get("purge"))), "jobs"
                self._authorize(token, "read-job", namespace)
                return 200, self._public(self._job(job_id)), "jobs"
            if rest == ["allocations"]:
                self._authorize(token, "read-job", namespace)
                self._job(job_id)
                # api/allocations.go AllocationListStub has no DesiredTransition: only
                # GET /v1/allocation/:id shows it.
                allocs = [
                    {k: v for k, v in self._public(a).items() if k != "DesiredTransition"}
                    for a in self.allocs.values()
                    if a["JobID"] == job_id
                ]
                if not _go_bool(query.get("all")):
                    latest = self.jobs[job_id]["CreateIndex"]
                    allocs = [a for a in allocs if a["CreateIndex"] >= latest]
                return 200, allocs, "allocs"
            if rest == ["summary"]:
                self._authorize(token, "read-job", namespace)
                return 200, self.summary(job_id), "jobs"
            if rest == ["scale"]:
                if method in ("PUT", "POST"):
                    self._authorize(token, "scale-job", namespace)
                    return 200, self.scale(job_id, body or {}), "jobs"
                self._authorize(token, "read-job", namespace)
                return 200, self.scale_status(job_id), "jobs"
        if parts[:2] == ["v1", "vars"] and len(parts) == 2:
            self._authorize(token, "variables:list", namespace)
            return 200, self.list_variables(namespace, query.get("prefix", "")), "vars"
        if parts[:2] == ["v1", "var"]:
            var_path = "/".join(parts[2:])
            if not var_path:
                raise HttpError(400, "missing variable path")
            if method == "GET":
                self._authorize(token, "variables:read", namespace)
                variable = self.variables.get((namespace, var_path))
                if variable is None:
                    raise HttpError(404, "variable not found")
                return 200, dict(variable), "vars"
            if method in ("PUT", "POST"):
                self._authorize(token, "variables:write", namespace)
                # The `namespace` query parameter overrides the body's Namespace.
                ns = query.get("namespace") or (body or {}).get("Namespace") or "default"
                return self.put_variable(var_path, body or {}, ns, self._cas(query), token)
            if method == "DELETE":
                self._authorize(token, "variables:destroy", namespace)
                return self.delete_variable(var_path, namespace, self._cas(query), token)
        if parts[:2] == ["v1", "evaluation"] and len(parts) == 3:
            # nomad/eval_endpoint.go GetEval: read-job on the request's namespace (python-nomad
            # sends none: "default"), then again on the evaluation's own.
            self._authorize(token, "read-job", namespace)
            ev = self.evals.get(parts[2])
            if ev is None:
                raise HttpError(404, "eval not found")
            self._authorize(token, "read-job", ev["Namespace"])
            return 200, ev, "evals"
        if parts[:2] == ["v1", "allocation"] and len(parts) == 4 and parts[3] == "stop":
            if method not in ("PUT", "POST"):
                raise HttpError(405, "Invalid method")
            alloc = self.allocs.get(parts[2])
            if alloc is None:
                raise HttpError(404, "alloc not found")
            self._authorize(token, "alloc-lifecycle", alloc["Namespace"])
            return 200, self.stop_allocation(alloc), "allocs"
        if parts[:2] == ["v1", "allocation"] and len(parts) == 3:
            self._authorize(token, "read-job", namespace)
            alloc = self.allocs.get(parts[2])
            if alloc is None:
                raise HttpError(404, "alloc not found")
            return 200, self._public(alloc), "allocs"
        raise HttpError(404, f"Invalid URL path: {path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw.strip() else None
                token = self.headers.get("X-Nomad-Token")
                double.requests.append((method, url.path, body))
                if method == "GET" and url.path.startswith("/v1/client/fs/logs/"):
                    double.serve_logs(self, url.path.removeprefix("/v1/client/fs/logs/"), query)
                    return
                try:
                    with double.lock:
                        status, payload, table = double.route(method, url.path, query, body, token)
                        if method == "GET" and "index" in query:
                            deadline = time.monotonic() + _wait_seconds(query.get("wait"))
                            wanted = int(query["index"])
                            while double.table_index[table] <= wanted and time.monotonic() < deadline:
                                double.lock.wait(deadline - time.monotonic())
                            status, payload, table = double.route(method, url.path, query, body, token)
                        index = double.table_index[table]
                    # 204 (a deleted variable) has no body.
                    data = b"" if status == 204 else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Nomad-Index", str(index))
                    self.send_header("X-Nomad-KnownLeader", "true")
                    self.send_header("X-Nomad-LastContact", "0")
                except HttpError as err:
                    data = err.text.encode()
                    self.send_response(err.status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler


def _strip_counts(value: Any) -> Any:
    """A job's spec without group counts: a count change alone is not a new version to replace."""
    if isinstance(value, list):
        return [_strip_counts(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_counts(v) for k, v in value.items() if k != "Count" or "Tasks" not in value}
    return value


def _go_bool(value: str | None) -> bool:
    """Query flags are parsed with Go's strconv.ParseBool ("1", "t", "T", "TRUE", "true", "True")."""
    return value in ("1", "t", "T", "TRUE", "true", "True")


# --- job canonicalisation and validation --------------------------------------------------------
def validate_job(job: dict[str, Any]) -> None:
    """Job.Validate (nomad/structs/structs.go, read at v1.9.7 and 2.0.x HEAD, which agree here)
    on the job as the HTTP agent canonicalises it (api/jobs.go Job.Canonicalize). Errors are a
    go-multierror list, which the agent answers with 500: command/agent/http.go
    errCodeFromHandler defaults to 500 for an error that carries no code."""
    errors = []
    if not job.get("ID"):
        errors.append("Missing job ID")
    if not job.get("TaskGroups"):
        errors.append("Missing job task groups")
    for group in job.get("TaskGroups") or []:
        group_errors = []
        update = canonical_group_update(job, group)
        job_type = job.get("Type", "service")
        # structs.go TaskGroup.Validate; api/tasks.go TaskGroup.Canonicalize gives system and
        # sysbatch groups no default reschedule policy, so only a submitted one is refused.
        if job_type in ("system", "sysbatch") and group.get("ReschedulePolicy") is not None:
            group_errors.append("System or sysbatch jobs should not have a reschedule policy")
        # structs.go TaskGroup.Validate: "Validate the update strategy".
        if update is not None:
            if job_type not in ("service", "system"):
                group_errors.append(f'Job type "{job_type}" does not allow update block')
            group_errors += update_strategy_problems(update)
        scaling = group.get("Scaling")
        count = int(group.get("Count", 1))
        if scaling is not None:
            smin = int(scaling.get("Min", count))
            smax = int(scaling.get("Max", 0))
            if count > smax:
                group_errors.append(
                    "Task group scaling policy validation failed: "
                    "task group count must not be greater than maximum count in scaling policy"
                )
            if count < smin:
                group_errors.append(
                    "Task group scaling policy validation failed: "
                    "task group count must not be less than minimum count in scaling policy"
                )
        # structs.go TaskGroup.validateServices -> services.go Service.Validate / ValidateName.
        for i, service in enumerate(group.get("Services") or []):
            name = str(service.get("Name") or "")
            if not _SERVICE_NAME.match(re.sub(r"\$\{[^}]*\}", "ENV-VAR", name)):
                group_errors.append(
                    f"Task group service validation failed: Service[{i}] {name} validation failed: "
                    "Service name must be valid per RFC 1123 and can contain only alphanumeric characters "
                    f'or dashes and must be no longer than 63 characters: "{name}"'
                )
        for task in group.get("Tasks") or []:
            task_errors = []
            if task.get("Driver") not in ("docker", "raw_exec", "exec"):
                task_errors.append("Missing task driver")
            # structs.go Task.Validate: a service job's KillTimeout may not exceed the group's
            # non-zero ProgressDeadline, whatever MaxParallel is (api Task.Canonicalize: 5s default).
            kill_timeout = int(task.get("KillTimeout") if task.get("KillTimeout") is not None else 5 * _S)
            if kill_timeout < 0:
                task_errors.append("KillTimeout must be a positive value")
            elif (
                job.get("Type", "service") == "service"
                and update is not None
                and update["ProgressDeadline"] > 0
                and kill_timeout > update["ProgressDeadline"]
            ):
                task_errors.append(
                    f"KillTimout ({go_duration(kill_timeout)}) longer than the group's ProgressDeadline "
                    f"({go_duration(update['ProgressDeadline'])})"
                )
            # nomad/structs Template.Validate
            for i, template in enumerate(task.get("Templates") or [], start=1):
                prefix = f"Template {i} validation failed: "
                if not template.get("DestPath"):
                    task_errors.append(prefix + "Must specify a destination for the template")
                if not template.get("EmbeddedTmpl") and not template.get("SourcePath"):
                    task_errors.append(prefix + "Must specify a source path or have an embedded template")
                if template.get("Envvars") and template.get("ChangeMode") == "signal":
                    task_errors.append(prefix + "cannot use signals with env var templates")
            if task_errors:
                group_errors.append(f"Task {task.get('Name')} validation failed: {_multierror(task_errors)}")
        if group_errors:
            errors.append(f"Task group {group.get('Name')} validation failed: {_multierror(group_errors)}")
    if errors:
        raise HttpError(500, _multierror(errors))


_S = 1_000_000_000
# api/jobs.go DefaultUpdateStrategy (the same at v1.9.7 and 2.0.x HEAD).
DEFAULT_UPDATE: dict[str, Any] = {
    "Stagger": 30 * _S,
    "MaxParallel": 1,
    "HealthCheck": "checks",
    "MinHealthyTime": 10 * _S,
    "HealthyDeadline": 300 * _S,
    "ProgressDeadline": 600 * _S,
    "AutoRevert": False,
    "Canary": 0,
    "AutoPromote": False,
}
# nomad/structs/services.go Service.ValidateName (RFC 1123 label: at most 63 characters).
_SERVICE_NAME = re.compile(r"^(?i:[a-z0-9]|[a-z0-9][a-z0-9\-]{0,61}[a-z0-9])$")


def _set_fields(update: dict[str, Any] | None) -> dict[str, Any]:
    """The fields a JSON UpdateStrategy sets: an absent or null key is a nil pointer in api/."""
    return {k: v for k, v in (update or {}).items() if k in DEFAULT_UPDATE and v is not None}


def update_is_empty(update: dict[str, Any]) -> bool:
    """api/jobs.go UpdateStrategy.Empty: no field set to a non-zero value."""
    return not any(update.get(k) for k in DEFAULT_UPDATE)


def canonical_group_update(job: dict[str, Any], group: dict[str, Any]) -> dict[str, Any] | None:
    """The group's update strategy after the HTTP agent's canonicalisation:
    api/jobs.go Job.Canonicalize fills the job's Update with UpdateStrategy.Canonicalize (nil
    fields from DefaultUpdateStrategy; a service job without one gets the default), then
    api/tasks.go TaskGroup.Canonicalize merges the group's over a copy of it, or inherits the
    job's when the group has none and the job's is not Empty, and canonicalises the result."""
    job_update: dict[str, Any] | None = None
    if job.get("Update") is not None:
        job_update = {**DEFAULT_UPDATE, **_set_fields(job["Update"])}
    elif job.get("Type", "service") == "service":
        job_update = dict(DEFAULT_UPDATE)
    group_update = group.get("Update")
    if job_update is not None and group_update is not None:
        merged: dict[str, Any] | None = {**job_update, **_set_fields(group_update)}
    elif job_update is not None and not update_is_empty(job_update):
        merged = dict(job_update)
    else:
        merged = _set_fields(group_update) if group_update is not None else None
    return None if merged is None else {**DEFAULT_UPDATE, **merged}


def update_strategy_problems(u: dict[str, Any]) -> list[str]:
    """nomad/structs/structs.go UpdateStrategy.Validate, on a canonical strategy."""
    problems = []
    if u["HealthCheck"] not in ("checks", "task_states", "manual"):
        problems.append(f'Invalid health check given: "{u["HealthCheck"]}"')
    if u["MaxParallel"] < 0:
        problems.append(f"Max parallel can not be less than zero: {u['MaxParallel']} < 0")
    if u["Canary"] < 0:
        problems.append(f"Canary count can not be less than zero: {u['Canary']} < 0")
    if u["Canary"] == 0 and u["AutoPromote"]:
        problems.append("Auto Promote requires a Canary count greater than zero")
    if u["MinHealthyTime"] < 0:
        problems.append(f"Minimum healthy time may not be less than zero: {go_duration(u['MinHealthyTime'])}")
    if u["HealthyDeadline"] <= 0:
        problems.append(f"Healthy deadline must be greater than zero: {go_duration(u['HealthyDeadline'])}")
    if u["ProgressDeadline"] < 0:
        problems.append(f"Progress deadline must be zero or greater: {go_duration(u['ProgressDeadline'])}")
    if u["MinHealthyTime"] >= u["HealthyDeadline"]:
        problems.append(
            "Minimum healthy time must be less than healthy deadline: "
            f"{go_duration(u['MinHealthyTime'])} > {go_duration(u['HealthyDeadline'])}"
        )
    if u["ProgressDeadline"] != 0 and u["HealthyDeadline"] >= u["ProgressDeadline"]:
        problems.append(
            "Healthy deadline must be less than progress deadline: "
            f"{go_duration(u['HealthyDeadline'])} > {go_duration(u['ProgressDeadline'])}"
        )
    if u["Stagger"] <= 0:
        problems.append(f"Stagger must be greater than zero: {go_duration(u['Stagger'])}")
    return problems


def go_duration(ns: int) -> str:
    """Go's time.Duration.String for whole milliseconds and up ("10m15s", "1h0m0s", "0s")."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < _S:
        return f"{sign}{ns / 1_000_000:g}ms"
    hours, rest = divmod(ns, 3600 * _S)
    minutes, rest = divmod(rest, 60 * _S)
    seconds = f"{rest / _S:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror ListFormatFunc, as Nomad's validation errors read."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def _highest(indexes: set[int], n: int) -> set[int]:
    """allocNameIndex.Highest: the n highest indexes set in the bitmap."""
    return set(sorted(indexes, reverse=True)[:n])


def compute_stop(
    untainted: list[dict[str, Any]],
    migrate: list[dict[str, Any]],
    reschedule_now: list[dict[str, Any]],
    count: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """scheduler/reconcile.go computeStop and computeGroup's name index, v1.9.7 (no lost or
    canary allocations here). Which allocations a lower Count stops:
    - remove = untainted that are not disconnected (ClientStatus unknown) + migrating - Count;
      a failed allocation awaiting its delayed reschedule is untainted, so it counts;
    - the name index holds untainted + migrate + reschedule-now + lost;
    - migrating allocations go first, the highest of their indexes;
    - then the untainted ones whose names are among the index's `remove` highest; v1.9.7 first
      drops terminal ones from that set (filterByTerminal), so a failed allocation's index is
      chosen but nothing is stopped for it (2.0.x HEAD, scheduler/reconciler/reconcile_cluster.go,
      drops only server-terminal ones, filterByServerTerminal, and stops the failed one);
    - any still missing are arbitrary untainted ones (Go map order: random here)."""
    known = [a for a in untainted if a["ClientStatus"] != "unknown"]
    remove = len(known) + len(migrate) - count
    if remove <= 0:
        return []
    bitmap = {a["_index"] for a in untainted + migrate + reschedule_now}
    working = [
        a for a in untainted if a["DesiredStatus"] == "run" and a["ClientStatus"] not in ("complete", "failed", "lost")
    ]
    rng.shuffle(working)
    stop: list[dict[str, Any]] = []
    if migrate:
        names = _highest({a["_index"] for a in migrate}, remove)
        for alloc in sorted(migrate, key=lambda a: rng.random()):
            if alloc["_index"] in names:
                stop.append(alloc)
                bitmap.discard(alloc["_index"])
                remove -= 1
                if remove == 0:
                    return stop
    names = _highest(bitmap, remove)
    for alloc in list(working):
        if alloc["_index"] in names:
            stop.append(alloc)
            working.remove(alloc)
            remove -= 1
            if remove == 0:
                return stop
    for alloc in working[:remove]:
        stop.append(alloc)
    return stop
