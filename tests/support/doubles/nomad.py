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
- `GET /v1/evaluation/:id` -> Evaluation with `FailedTGAllocs: {group: AllocationMetric}` and
  `BlockedEval` when placement fails (api/evaluations.go; the CLI's "Placement Failure" output).
  A device request no node can satisfy is filtered as ConstraintFiltered {"missing devices": n}
  (scheduler/feasible/feasible.go DeviceChecker, FilterConstraintDevices).
- Allocation names are `<job>.<group>[<index>]`; new ones take the lowest free index and a lower
  count stops the highest indexes (scheduler/reconciler reconcile_cluster.go computePlacements /
  computeStop: nameIndex.Next / nameIndex.Highest).
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
  KEY= lines allowed) is understood, reading the variable with the task's implicit workload
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

import json
import os
import re
import shutil
import signal
import socket
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

_GO_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_VAR_PATH = re.compile(r"^[a-zA-Z0-9\-_~/]{1,128}$")
_NOMAD_VAR_TMPL = re.compile(r'^\{\{ with nomadVar "(?P<path>[^"]+)" \}\}(?P<body>.*)\{\{ end \}\}$', re.S)
_ENV_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=\{\{ \.(?P<item>[A-Za-z0-9_]+) \}\}$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _wait_seconds(text: str | None) -> float:
    if not text:
        return 300.0  # Nomad's default wait
    m = _GO_DURATION.match(text)
    return min(600.0, float(m.group(1)) * _UNITS[m.group(2)]) if m else 300.0


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
        run_tasks: bool = False,
        deployment_s: float = 30.0,
        kill_timeout_cap_s: float | None = None,
        consul: Any = None,
        check_interval_cap_s: float | None = None,
    ) -> None:
        self.nodes = nodes if nodes is not None else [FakeNode("node-1")]
        # secret -> capabilities (None = management token). None: ACLs disabled.
        self.acl_tokens = acl_tokens
        self.run_tasks = run_tasks
        self.deployment_s = deployment_s
        self.kill_timeout_cap_s = kill_timeout_cap_s
        # A tests.support.doubles.consul.ConsulDouble to register allocations' services in (run_tasks only).
        self.consul = consul
        self.check_interval_cap_s = check_interval_cap_s
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
        self.root = Path(tempfile.mkdtemp(prefix="nomad-double-"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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
        update = job.get("Update")
        return update is None or int(update.get("MaxParallel", 1) or 0) > 0

    def _reconcile(self, job: dict[str, Any], triggered_by: str) -> dict[str, Any]:
        ev = self._new_eval(job, triggered_by)
        failed: dict[str, Any] = {}
        job["_placed"] = 0
        for group in job["TaskGroups"]:
            gname = group["Name"]
            live = [
                a
                for a in self.allocs.values()
                if a["JobID"] == job["ID"]
                and a["TaskGroup"] == gname
                and a["DesiredStatus"] == "run"
                and a["ClientStatus"] not in ("complete", "failed", "lost")
            ]
            # A job version change is a destructive update of every allocation (no deployment).
            outdated = [a for a in live if a["JobVersion"] != job["Version"]]
            for alloc in outdated:
                self._stop_alloc(alloc, "alloc is being updated due to job update")
            live = [a for a in live if a not in outdated]
            count = 0 if job.get("Stop") else int(group.get("Count", 1))
            if len(live) > count:
                by_index = sorted(live, key=lambda a: a["_index"], reverse=True)
                for alloc in by_index[: len(live) - count]:
                    self._stop_alloc(alloc, "alloc not needed due to job update")
            elif len(live) < count:
                used = {a["_index"] for a in live}
                missing = count - len(live)
                free = [i for i in range(count + len(used)) if i not in used][:missing]
                placed = 0
                for idx in free:
                    node = self._pick_node(group)
                    if node is None:
                        break
                    self._place(job, group, idx, node, ev["ID"])
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

    def _place(self, job: dict[str, Any], group: dict[str, Any], idx: int, node: FakeNode, eval_id: str) -> None:
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

    def _start_alloc(self, alloc_id: str, job: dict[str, Any], task: dict[str, Any]) -> None:
        time.sleep(0.02)  # the client picks the allocation up a moment later
        with self.lock:
            alloc = self.allocs.get(alloc_id)
            if alloc is None or alloc["DesiredStatus"] != "run":
                return
            if not self.run_tasks:
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
                if line["item"] not in variable["Items"]:
                    raise _TemplateError(f"{block}: variable has no item {line['item']!r}")
                rendered[line["key"]] = str(variable["Items"][line["item"]])
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
            (logs / f"{task['Name']}.stdout.0").open("wb") as out,
            (logs / f"{task['Name']}.stderr.0").open("wb") as err,
        ):
            return subprocess.Popen(argv, cwd=task_dir, env=env, stdout=out, stderr=err, start_new_session=True)

    def log_text(self, alloc_id: str, stream: str = "stderr") -> str:
        path = self.root / alloc_id / "alloc" / "logs" / f"worker.{stream}.0"
        return path.read_text(errors="replace") if path.exists() else ""

    def _reap(self, alloc_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self.lock:
            alloc = self.allocs.get(alloc_id)
            self.tasks.pop(alloc_id, None)
            self._deregister_services(alloc_id)
            if alloc is not None and alloc["ClientStatus"] in ("pending", "running"):
                status = "complete" if code == 0 or alloc["DesiredStatus"] != "run" else "failed"
                self._set_alloc(alloc, ClientStatus=status, ClientDescription=f"Task exited with code {code}")

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
    def _allowed(self, token: str | None, capability: str) -> bool:
        try:
            self._authorize(token, capability)
        except HttpError:
            return False
        return True

    def _authorize(self, token: str | None, capability: str) -> None:
        if self.acl_tokens is None:
            return
        if not token:
            raise HttpError(403, "Permission denied")
        if token not in self.acl_tokens:
            raise HttpError(403, "ACL token not found")
        caps = self.acl_tokens[token]
        if caps is not None and capability not in caps:
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
        errors = []
        if not job.get("ID"):
            errors.append("Missing job ID")
        if not job.get("TaskGroups"):
            errors.append("Missing job task groups")
        for group in job.get("TaskGroups") or []:
            scaling = group.get("Scaling")
            count = int(group.get("Count", 1))
            if scaling is not None:
                smin = int(scaling.get("Min", count))
                smax = int(scaling.get("Max", 0))
                if count > smax:
                    errors.append(
                        f"Task group {group.get('Name')} validation failed: "
                        "task group count must not be greater than maximum count in scaling policy"
                    )
                if count < smin:
                    errors.append(
                        f"Task group {group.get('Name')} validation failed: "
                        "task group count must not be less than minimum count in scaling policy"
                    )
            for task in group.get("Tasks") or []:
                if task.get("Driver") not in ("docker", "raw_exec", "exec"):
                    errors.append(f"Task {task.get('Name')} validation failed: Missing task driver")
                # nomad/structs Template.Validate
                for i, template in enumerate(task.get("Templates") or [], start=1):
                    prefix = f"Task {task.get('Name')} validation failed: Template {i} validation failed: "
                    if not template.get("DestPath"):
                        errors.append(prefix + "Must specify a destination for the template")
                    if not template.get("EmbeddedTmpl") and not template.get("SourcePath"):
                        errors.append(prefix + "Must specify a source path or have an embedded template")
                    if template.get("Envvars") and template.get("ChangeMode") == "signal":
                        errors.append(prefix + "cannot use signals with env var templates")
        if errors:
            lines = "".join(f"\t* {e}\n" for e in errors)
            raise HttpError(400, f"{len(errors)} error{'s' if len(errors) > 1 else ''} occurred:\n{lines}\n")

    def register(self, body: dict[str, Any], namespace: str) -> dict[str, Any]:
        job = dict(body.get("Job") or {})
        job.setdefault("Namespace", namespace)
        job.setdefault("Type", "service")
        job.setdefault("Name", job.get("ID"))
        job.setdefault("Priority", 50)
        with self.lock:
            existing = self.jobs.get(job.get("ID", ""))
            if existing is not None and body.get("PreserveCounts"):
                old = {g["Name"]: g["Count"] for g in existing["TaskGroups"]}
                for group in job.get("TaskGroups") or []:
                    if group["Name"] in old:
                        group["Count"] = old[group["Name"]]
            self._validate(job)
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
        if not self._allowed(token, "variables:read"):
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
                self._authorize(token, "submit-job")
                return 200, self.register(body or {}, namespace), "jobs"
            self._authorize(token, "read-job")
            return 200, self.list_jobs(query.get("prefix", ""), _go_bool(query.get("meta"))), "jobs"
        if parts[:2] == ["v1", "job"] and len(parts) >= 3:
            job_id, rest = parts[2], parts[3:]
            if not rest:
                if method == "DELETE":
                    self._authorize(token, "submit-job")
                    return 200, self.deregister(job_id, _go_bool(query.get("purge"))), "jobs"
                self._authorize(token, "read-job")
                return 200, self._public(self._job(job_id)), "jobs"
            if rest == ["allocations"]:
                self._authorize(token, "read-job")
                self._job(job_id)
                allocs = [self._public(a) for a in self.allocs.values() if a["JobID"] == job_id]
                if not _go_bool(query.get("all")):
                    latest = self.jobs[job_id]["CreateIndex"]
                    allocs = [a for a in allocs if a["CreateIndex"] >= latest]
                return 200, allocs, "allocs"
            if rest == ["summary"]:
                self._authorize(token, "read-job")
                return 200, self.summary(job_id), "jobs"
            if rest == ["scale"]:
                if method in ("PUT", "POST"):
                    self._authorize(token, "scale-job")
                    return 200, self.scale(job_id, body or {}), "jobs"
                self._authorize(token, "read-job")
                return 200, self.scale_status(job_id), "jobs"
        if parts[:2] == ["v1", "vars"] and len(parts) == 2:
            self._authorize(token, "variables:list")
            return 200, self.list_variables(namespace, query.get("prefix", "")), "vars"
        if parts[:2] == ["v1", "var"]:
            var_path = "/".join(parts[2:])
            if not var_path:
                raise HttpError(400, "missing variable path")
            if method == "GET":
                self._authorize(token, "variables:read")
                variable = self.variables.get((namespace, var_path))
                if variable is None:
                    raise HttpError(404, "variable not found")
                return 200, dict(variable), "vars"
            if method in ("PUT", "POST"):
                self._authorize(token, "variables:write")
                # The `namespace` query parameter overrides the body's Namespace.
                ns = query.get("namespace") or (body or {}).get("Namespace") or "default"
                return self.put_variable(var_path, body or {}, ns, self._cas(query), token)
            if method == "DELETE":
                self._authorize(token, "variables:destroy")
                return self.delete_variable(var_path, namespace, self._cas(query), token)
        if parts[:2] == ["v1", "evaluation"] and len(parts) == 3:
            self._authorize(token, "read-job")
            ev = self.evals.get(parts[2])
            if ev is None:
                raise HttpError(404, "eval not found")
            return 200, ev, "evals"
        if parts[:2] == ["v1", "allocation"] and len(parts) == 3:
            self._authorize(token, "read-job")
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
