"""Render an endpoint into the Nomad service job that runs its workers.

The JSON is the body of `POST /v1/jobs` (`{"Job": {...}}`) with Go field names from Nomad's `api`
package (api/jobs.go, api/tasks.go, api/resources.go, api/services.go, api/scaling.go,
api/constraint.go) as shown on https://developer.hashicorp.com/nomad/api-docs/json-jobs. Every
duration is an integer number of nanoseconds (Go's time.Duration). `render_hcl` writes the same job
as a jobspec (https://developer.hashicorp.com/nomad/docs/job-specification) for humans and
`nomad job run`; nomad/worker.nomad.hcl is one such rendering, checked against this module by the
tests.

Choices, each made once here:
- One service job per endpoint, `skiff-<name>`, with one group `worker` holding one task `worker`.
  The controller scales the group's `Count`; the job's `Scaling` block says `Min 0` explicitly
  because Nomad defaults `Min` to the group's count, which would forbid scaling to zero.
- Deployments are disabled (`Update.MaxParallel = 0`). With Nomad's default update strategy every
  count change starts a deployment, and `POST /v1/job/:id/scale` answers 400 "job scaling blocked
  due to active deployment" until it finishes (hashicorp/nomad issue 8143, PR 8187). An
  autoscaler that cannot scale while a slow GPU image pulls is useless, so Skiff gives that up:
  Nomad treats an update strategy with MaxParallel 0 as empty (structs.UpdateStrategy.IsEmpty),
  so no deployment is created. A spec change is then a destructive update of all allocations at
  once; each old worker gets SIGTERM and `KillTimeout` to finish the job in hand.
  `ProgressDeadline` is 0 too: Nomad canonicalises the rest of the strategy from its defaults
  (api/jobs.go UpdateStrategy.Canonicalize: ProgressDeadline 10m), copies it into the group
  (api/tasks.go TaskGroup.Canonicalize), and Task.Validate (nomad/structs/structs.go) refuses a
  KillTimeout longer than a non-zero ProgressDeadline, whatever MaxParallel is: with the default
  any execution timeout above 585 s could not be registered.
- `KillTimeout` = execution timeout (capped at one hour) plus a grace period, so a worker stopped
  mid-job can finish it. Nomad clients cap it with their `max_kill_timeout` (default 30s): raise
  that on GPU clients (docs/nomad-dev.md).
- The worker key is never in the job: anyone who may read the job (`nomad job inspect`) could
  otherwise take and complete the endpoint's jobs. The controller keeps it in the Nomad Variable
  `nomad/jobs/<job id>` (item `worker_key`), which the job's own tasks may read through their
  workload identity with no ACL policy ("Task Access to Variables",
  https://developer.hashicorp.com/nomad/docs/concepts/variables), and a template renders it into
  the task's environment as RUNPOD_AI_API_KEY
  (https://developer.hashicorp.com/nomad/docs/job-specification/template#nomad-variables).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skiff import __version__
from skiff_core.config import Settings
from skiff_core.durations import format_duration
from skiff_core.orchestrator.worker_env import worker_environment
from skiff_core.spec import NAME_PREFIX, EndpointSpec, EndpointType, VolumeType
from skiff_core.spec import ImageReferenceError as ImageReferenceError  # re-exported for callers
from skiff_core.spec import validate_image_reference as validate_image_reference

GROUP_NAME = "worker"
TASK_NAME = "worker"
HTTP_PORT_LABEL = "http"
HEALTH_PORT_LABEL = "health"  # Runpod's convention: the health server may be a separate one
GPU_DEVICE = "nvidia/gpu"
MANAGED_META_KEY = "skiff_managed"
JOB_PREFIX = NAME_PREFIX

_NS = 1_000_000_000
_KILL_GRACE_S = 15
_KILL_CAP_S = 3600

Driver = Literal["auto", "docker", "raw_exec"]


# The worker key's way into the task (see the module docstring).
WORKER_KEY_ENV = "RUNPOD_AI_API_KEY"
WORKER_KEY_ITEM = "worker_key"
WORKER_ENV_FILE = "secrets/worker.env"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    # "auto": docker when the endpoint has an image, raw_exec (its `command`) otherwise.
    # "raw_exec": run `command` directly, as on `nomad agent -dev` without Docker.
    driver: Driver = "auto"
    # raw_exec starts tasks in their allocation directory; a relative `command` (the embedded
    # mode's "examples/workers/echo.py") needs the directory it is relative to.
    workdir: Path | None = None


def job_id(endpoint: str) -> str:
    return JOB_PREFIX + endpoint


def service_name(endpoint: str) -> str:
    return JOB_PREFIX + endpoint


def endpoint_of_job(job: str) -> str | None:
    return job[len(JOB_PREFIX) :] if job.startswith(JOB_PREFIX) else None


def worker_key_variable(endpoint: str) -> str:
    """The Nomad Variable path holding the endpoint's worker key: its job's own path, the one
    path its tasks read implicitly (the policy's `path "nomad/jobs/$job_id"`)."""
    return f"nomad/jobs/{job_id(endpoint)}"


def worker_key_template(endpoint: str) -> dict[str, Any]:
    """api/tasks.go `Template`: rendered by the Nomad client into the task directory and, with
    `Envvars`, read back as `KEY=value` lines into the task's environment, where it overrides the
    task's `Env` (client/taskenv/env.go). `ChangeMode: restart` restarts the task when the key
    changes (the only change mode that updates env). Until the variable exists Nomad blocks the
    task, so the controller writes it before registering the job."""
    path = worker_key_variable(endpoint)
    return {
        "EmbeddedTmpl": f'{{{{ with nomadVar "{path}" }}}}{WORKER_KEY_ENV}={{{{ .{WORKER_KEY_ITEM} }}}}{{{{ end }}}}',
        "DestPath": WORKER_ENV_FILE,
        "Envvars": True,
        "ChangeMode": "restart",
        # Only the Nomad client reads it (into env); the task itself never needs the file.
        "Perms": "0600",
    }


SECRETS_ENV_FILE = "secrets/endpoint.env"


def secrets_variable(endpoint: str) -> str:
    """The Nomad Variable holding an endpoint's secrets, one item per name: its group's path,
    which its tasks read implicitly like the job's own (`nomad/jobs/$job_id/$group`), kept apart
    from the worker key's variable, which the controller rewrites and deletes with the job."""
    return f"{worker_key_variable(endpoint)}/{GROUP_NAME}"


def secrets_template(spec: EndpointSpec) -> dict[str, Any]:
    """api/tasks.go `Template` putting the endpoint's `secrets` into the task's environment, the
    way `worker_key_template` does the key. `ErrMissingKey` (client/allocrunner/taskrunner/
    template/template.go passes it to consul-template): an item not set fails the task instead of
    handing the worker the text "<no value>"."""
    path = secrets_variable(spec.name)
    lines = "".join(f"{name}={{{{ .{name} }}}}\n" for name in spec.secrets)
    return {
        "EmbeddedTmpl": f'{{{{ with nomadVar "{path}" }}}}\n{lines}{{{{ end }}}}',
        "DestPath": SECRETS_ENV_FILE,
        "Envvars": True,
        "ChangeMode": "restart",
        "Perms": "0600",
        "ErrMissingKey": True,
    }


# --- the job -----------------------------------------------------------------------------------
def _ns(seconds: float) -> int:
    return round(seconds * _NS)


def kill_timeout_s(spec: EndpointSpec) -> float:
    return min(spec.execution_timeout, _KILL_CAP_S) + _KILL_GRACE_S


def pick_driver(spec: EndpointSpec, options: RenderOptions) -> Literal["docker", "raw_exec"]:
    if options.driver == "docker" or (options.driver == "auto" and spec.image is not None):
        if spec.image is None:
            raise ValueError(f"endpoint {spec.name!r} has no `image` to run with the docker driver")
        return "docker"
    if spec.command is None:
        raise ValueError(f"endpoint {spec.name!r} has no `command` to run with the raw_exec driver")
    return "raw_exec"


def worker_env(spec: EndpointSpec, gateway_url: str, ping_interval_s: float = 10.0) -> dict[str, str]:
    """The worker environment (docs/compatibility.md, "Worker protocol"), shared with the local orchestrator, less the
    worker key (the template `worker_key_template` supplies it).

    Nomad interpolates `${NOMAD_ALLOC_ID}` when it starts the task, so the worker id is the
    allocation id (https://developer.hashicorp.com/nomad/docs/runtime/environment).
    """
    env = worker_environment(
        spec,
        gateway_url=gateway_url,
        worker_key="",
        worker_id="${NOMAD_ALLOC_ID}",
        ping_interval_s=ping_interval_s,
    )
    env.pop(WORKER_KEY_ENV, None)
    if spec.type is EndpointType.LOAD_BALANCER:
        # Runpod load-balancing workers listen on $PORT and answer health on $PORT_HEALTH.
        env["PORT"] = f"${{NOMAD_PORT_{HTTP_PORT_LABEL}}}"
        env["PORT_HEALTH"] = f"${{NOMAD_PORT_{HEALTH_PORT_LABEL}}}"
    return env


def gpu_constraints(models: list[str]) -> list[dict[str, str]]:
    """`${device.model}` is the device's Name (scheduler/feasible/feasible.go resolveDeviceTarget);
    `set_contains_any` splits both sides on commas (checkSetContainsAny), so a model list matches
    a device whose model is any one of them. Model names never contain commas (rejected below)."""
    if not models:
        return []
    for model in models:
        if "," in model:
            raise ValueError(f"GPU model names cannot contain a comma: {model!r}")
    if len(models) == 1:
        return [{"LTarget": "${device.model}", "Operand": "=", "RTarget": models[0]}]
    return [{"LTarget": "${device.model}", "Operand": "set_contains_any", "RTarget": ",".join(models)}]


def gpu_affinities(models: list[str]) -> list[dict[str, Any]]:
    """api/tasks.go `Affinity` on the device request, one per model with falling weights: the
    device allocator scores each free device by the sum of the weights it matches over the total
    (scheduler/feasible/device.go), so a node with a free first-choice GPU ranks above one with
    only a later choice. Weights are 1..100 (structs Affinity.Validate: non-zero, at most 100).
    One model needs none: the constraint already allows only it."""
    if len(models) < 2:
        return []
    count = len(models)
    return [
        {
            "LTarget": "${device.model}",
            "Operand": "=",
            "RTarget": model,
            "Weight": max(1, round(100 * (count - i) / count)),
        }
        for i, model in enumerate(models)
    ]


def _task_config(spec: EndpointSpec, driver: str, options: RenderOptions) -> dict[str, Any]:
    lb = spec.type is EndpointType.LOAD_BALANCER
    if driver == "docker":
        assert spec.image is not None
        config: dict[str, Any] = {"image": validate_image_reference(spec.image)}
        if lb:
            config["ports"] = [HTTP_PORT_LABEL, HEALTH_PORT_LABEL]
        return config
    assert spec.command is not None
    if options.workdir is None:
        return {"command": spec.command[0], "args": list(spec.command[1:])}
    # raw_exec has no working-directory option: change directory in a shell, then exec the command.
    return {
        "command": "/bin/sh",
        "args": ["-c", 'cd "$0" && exec "$@"', str(options.workdir), *spec.command],
    }


def _resources(spec: EndpointSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {"CPU": spec.resources.cpu_mhz, "MemoryMB": spec.resources.memory_mb}
    if spec.gpu is not None and spec.gpu.count > 0:
        device: dict[str, Any] = {"Name": GPU_DEVICE, "Count": spec.gpu.count}
        constraints = gpu_constraints(spec.gpu.models)
        if constraints:
            device["Constraints"] = constraints
        affinities = gpu_affinities(spec.gpu.models)
        if affinities:
            device["Affinities"] = affinities
        resources["Devices"] = [device]
    return resources


def group_volumes(spec: EndpointSpec) -> dict[str, dict[str, Any]]:
    """api/tasks.go `VolumeRequest`, by label (TaskGroup.Volumes). A host volume is one the
    client declares (`host_volume` in its config; Terraform's GPU nodes declare `model-cache`);
    a CSI volume must be registered first, and is attached as a file system, shared by every
    worker (nomad/structs/csi.go access and attachment modes; structs/volumes.go
    VolumeRequest.Validate requires both for CSI)."""
    volumes: dict[str, dict[str, Any]] = {}
    for label, volume in spec.volume.items():
        request: dict[str, Any] = {
            "Name": label,
            "Type": volume.type.value,
            "Source": volume.source,
            "ReadOnly": volume.read_only,
        }
        if volume.type is VolumeType.CSI:
            request["AccessMode"] = "multi-node-reader-only" if volume.read_only else "multi-node-multi-writer"
            request["AttachmentMode"] = "file-system"
        volumes[label] = request
    return volumes


def volume_mounts(spec: EndpointSpec) -> list[dict[str, Any]]:
    """api/tasks.go `VolumeMount` (Task.VolumeMounts): each group volume at its `path`."""
    return [
        {"Volume": label, "Destination": volume.path, "ReadOnly": volume.read_only}
        for label, volume in spec.volume.items()
    ]


def render_job(spec: EndpointSpec, settings: Settings, options: RenderOptions | None = None) -> dict[str, Any]:
    """The `{"Job": {...}}` body of `POST /v1/jobs` for one endpoint."""
    options = options or RenderOptions()
    driver = pick_driver(spec, options)
    lb = spec.type is EndpointType.LOAD_BALANCER

    task: dict[str, Any] = {
        "Name": TASK_NAME,
        "Driver": driver,
        "Config": _task_config(spec, driver, options),
        "Env": worker_env(spec, settings.gateway_url, settings.ping_interval_s),
        "Templates": [worker_key_template(spec.name)] + ([secrets_template(spec)] if spec.secrets else []),
        "Resources": _resources(spec),
        "KillTimeout": _ns(kill_timeout_s(spec)),
        "KillSignal": "SIGTERM",
    }
    group: dict[str, Any] = {
        "Name": GROUP_NAME,
        "Count": spec.scaling.min_workers,
        # Min is explicit: Nomad defaults it to Count, which would forbid scaling to zero.
        "Scaling": {"Enabled": True, "Min": 0, "Max": spec.scaling.max_workers},
        # A worker that crashes is restarted in place, 5s apart (plus jitter) 3 times in 5 minutes,
        # then (mode "delay") again once the 5 minutes are over, so the allocation stays put; the
        # reschedule policy applies to allocations that fail otherwise (a lost node, a failed template).
        "RestartPolicy": {"Attempts": 3, "Interval": _ns(300), "Delay": _ns(5), "Mode": "delay"},
        "ReschedulePolicy": {
            "Unlimited": True,
            "Delay": _ns(10),
            "DelayFunction": "exponential",
            "MaxDelay": _ns(300),
        },
        "Tasks": [task],
    }
    if spec.volume:
        group["Volumes"] = group_volumes(spec)
        task["VolumeMounts"] = volume_mounts(spec)
    if lb:
        # A dynamic host port; docker maps it to the same port inside the container (To unset),
        # and the worker listens on $PORT.
        group["Networks"] = [
            {"Mode": "host", "DynamicPorts": [{"Label": HTTP_PORT_LABEL}, {"Label": HEALTH_PORT_LABEL}]}
        ]
        group["Services"] = [
            {
                "Name": service_name(spec.name),
                "PortLabel": HTTP_PORT_LABEL,
                "Provider": "consul",
                "Tags": ["skiff", f"endpoint-{spec.name}"],
                "Checks": [
                    {
                        "Name": f"{service_name(spec.name)} health",
                        "Type": "http",
                        "Path": spec.health_path,
                        # The check probes PORT_HEALTH; traffic goes to the service's PORT.
                        "PortLabel": HEALTH_PORT_LABEL,
                        "Interval": _ns(5),
                        "Timeout": _ns(2),
                    }
                ],
            }
        ]

    job: dict[str, Any] = {
        "ID": job_id(spec.name),
        "Name": job_id(spec.name),
        "Type": "service",
        "Namespace": settings.nomad_namespace,
        "Datacenters": list(spec.datacenters if spec.datacenters is not None else settings.nomad_datacenters),
        "Meta": {
            MANAGED_META_KEY: "true",
            "skiff_endpoint": spec.name,
            "skiff_version": __version__,
            "spec_hash": spec.spec_hash(),
        },
        "Update": {"MaxParallel": 0, "ProgressDeadline": 0},
        "TaskGroups": [group],
    }
    if settings.nomad_region:
        job["Region"] = settings.nomad_region
    if settings.nomad_node_pool:
        job["NodePool"] = settings.nomad_node_pool
    return {"Job": job}


# --- HCL ---------------------------------------------------------------------------------------
def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        # JSON string escapes are HCL string escapes; `${...}` is left for Nomad to interpolate,
        # but `%{` opens an HCL template directive: `%%{` is its literal form.
        return json.dumps(value, ensure_ascii=False).replace("%{", "%%{")
    if isinstance(value, list):
        return "[" + ", ".join(_hcl_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as HCL")


class _Hcl:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def attrs(self, pairs: Mapping[str, Any]) -> None:
        present = {k: v for k, v in pairs.items() if v is not None}
        width = max((len(k) for k in present), default=0)
        for key, value in present.items():
            self.lines.append("  " * self.depth + f"{key.ljust(width)} = {_hcl_value(value)}")

    def open(self, header: str) -> None:
        self.lines.append("  " * self.depth + header + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.lines.append("  " * self.depth + "}")

    def blank(self) -> None:
        self.lines.append("")

    def map_block(self, name: str, values: Mapping[str, str]) -> None:
        self.open(name)
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            key_text = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else json.dumps(key)
            self.lines.append("  " * self.depth + f"{key_text.ljust(width)} = {_hcl_value(value)}")
        self.close()


def _dur(ns: int) -> str:
    return format_duration(ns / _NS)


def render_hcl(spec: EndpointSpec, settings: Settings, options: RenderOptions | None = None) -> str:
    """The same job as `render_job`, as a Nomad jobspec (HCL2)."""
    job = render_job(spec, settings, options)["Job"]
    group = job["TaskGroups"][0]
    task = group["Tasks"][0]
    out = _Hcl()
    out.lines.append(f"# Rendered by skiff {__version__} from endpoint {spec.name!r}; `skiff render` prints it.")
    out.open(f"job {_hcl_value(job['ID'])}")
    out.attrs(
        {
            "type": job["Type"],
            "region": job.get("Region"),
            "namespace": job["Namespace"],
            "datacenters": job["Datacenters"],
            "node_pool": job.get("NodePool"),
        }
    )
    out.blank()
    out.map_block("meta", job["Meta"])
    out.blank()
    out.lines.append("  " * out.depth + "# max_parallel = 0 disables deployments, so scaling is never blocked;")
    out.lines.append("  " * out.depth + "# progress_deadline = 0 lets kill_timeout exceed Nomad's 10m default.")
    out.open("update")
    out.attrs(
        {
            "max_parallel": job["Update"]["MaxParallel"],
            "progress_deadline": _dur(job["Update"]["ProgressDeadline"]),
        }
    )
    out.close()
    out.blank()
    out.open(f"group {_hcl_value(group['Name'])}")
    out.attrs({"count": group["Count"]})
    out.blank()
    out.open("scaling")
    scaling = group["Scaling"]
    out.attrs({"enabled": scaling["Enabled"], "min": scaling["Min"], "max": scaling["Max"]})
    out.close()
    out.blank()
    restart = group["RestartPolicy"]
    out.open("restart")
    out.attrs(
        {
            "attempts": restart["Attempts"],
            "interval": _dur(restart["Interval"]),
            "delay": _dur(restart["Delay"]),
            "mode": restart["Mode"],
        }
    )
    out.close()
    out.blank()
    resched = group["ReschedulePolicy"]
    out.open("reschedule")
    out.attrs(
        {
            "unlimited": resched["Unlimited"],
            "delay": _dur(resched["Delay"]),
            "delay_function": resched["DelayFunction"],
            "max_delay": _dur(resched["MaxDelay"]),
        }
    )
    out.close()
    for label, volume in group.get("Volumes", {}).items():
        out.blank()
        out.open(f"volume {_hcl_value(label)}")
        out.attrs(
            {
                "type": volume["Type"],
                "source": volume["Source"],
                "read_only": volume["ReadOnly"],
                "access_mode": volume.get("AccessMode"),
                "attachment_mode": volume.get("AttachmentMode"),
            }
        )
        out.close()
    for network in group.get("Networks", []):
        out.blank()
        out.open("network")
        out.attrs({"mode": network["Mode"]})
        for port in network["DynamicPorts"]:
            out.lines.append("  " * out.depth + f"port {_hcl_value(port['Label'])} {{}}")
        out.close()
    for service in group.get("Services", []):
        out.blank()
        out.open("service")
        out.attrs(
            {
                "name": service["Name"],
                "port": service["PortLabel"],
                "provider": service["Provider"],
                "tags": service["Tags"],
            }
        )
        for check in service["Checks"]:
            out.blank()
            out.open("check")
            out.attrs(
                {
                    "name": check["Name"],
                    "type": check["Type"],
                    "path": check["Path"],
                    "port": check["PortLabel"],
                    "interval": _dur(check["Interval"]),
                    "timeout": _dur(check["Timeout"]),
                }
            )
            out.close()
        out.close()
    out.blank()
    out.open(f"task {_hcl_value(task['Name'])}")
    out.attrs(
        {
            "driver": task["Driver"],
            "kill_timeout": _dur(task["KillTimeout"]),
            "kill_signal": task["KillSignal"],
        }
    )
    out.blank()
    out.open("config")
    out.attrs(task["Config"])
    out.close()
    for mount in task.get("VolumeMounts", []):
        out.blank()
        out.open("volume_mount")
        out.attrs({"volume": mount["Volume"], "destination": mount["Destination"], "read_only": mount["ReadOnly"]})
        out.close()
    out.blank()
    out.map_block("env", task["Env"])
    for template in task["Templates"]:
        out.blank()
        names = (
            f"{WORKER_KEY_ENV} from the job's"
            if template["DestPath"] == WORKER_ENV_FILE
            else f"{', '.join(spec.secrets)} from the endpoint's"
        )
        out.lines.append("  " * out.depth + f"# {names} Nomad Variable, never from this file.")
        out.open("template")
        out.attrs(
            {
                "destination": template["DestPath"],
                "env": template["Envvars"],
                "change_mode": template["ChangeMode"],
                "perms": template.get("Perms"),
                "error_on_missing_key": template.get("ErrMissingKey"),
                "data": template["EmbeddedTmpl"],
            }
        )
        out.close()
    out.blank()
    resources = task["Resources"]
    out.open("resources")
    out.attrs({"cpu": resources["CPU"], "memory": resources["MemoryMB"]})
    for device in resources.get("Devices", []):
        out.blank()
        out.open(f"device {_hcl_value(device['Name'])}")
        out.attrs({"count": device["Count"]})
        for constraint in device.get("Constraints", []):
            out.blank()
            out.open("constraint")
            out.attrs(
                {
                    "attribute": constraint["LTarget"],
                    "operator": constraint["Operand"],
                    "value": constraint["RTarget"],
                }
            )
            out.close()
        for affinity in device.get("Affinities", []):
            out.blank()
            out.open("affinity")
            out.attrs(
                {
                    "attribute": affinity["LTarget"],
                    "operator": affinity["Operand"],
                    "value": affinity["RTarget"],
                    "weight": affinity["Weight"],
                }
            )
            out.close()
        out.close()
    out.close()  # resources
    out.close()  # task
    out.close()  # group
    out.close()  # job
    return "\n".join(out.lines) + "\n"
