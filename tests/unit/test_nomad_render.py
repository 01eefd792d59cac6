"""Rendering endpoints into Nomad jobs: goldens for the example endpoints, and every key checked
against the field names of Nomad's `api` package structs."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from pydantic import ValidationError

from skiff_core.config import Settings
from skiff_core.endpoints import load_endpoints
from skiff_core.nomad.render import (
    ImageReferenceError,
    RenderOptions,
    render_hcl,
    render_job,
    validate_image_reference,
    worker_key_variable,
)
from skiff_core.spec import EndpointSpec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parents[1] / "golden"
SETTINGS = Settings(public_url="http://skiff-gateway.service.consul:8000", nomad_datacenters=["dc1"])

# Field names of Nomad's api package (github.com/hashicorp/nomad/api), struct by struct; the JSON
# job format uses them verbatim (https://developer.hashicorp.com/nomad/api-docs/json-jobs).
ALLOWED: dict[str, set[str]] = {
    # api/jobs.go type Job
    "Job": {
        "Region",
        "Namespace",
        "ID",
        "Name",
        "Type",
        "Priority",
        "AllAtOnce",
        "Datacenters",
        "NodePool",
        "Constraints",
        "Affinities",
        "TaskGroups",
        "Update",
        "Multiregion",
        "Spreads",
        "Periodic",
        "ParameterizedJob",
        "Reschedule",
        "Migrate",
        "Meta",
        "ConsulToken",
        "VaultToken",
    },
    # api/jobs.go type UpdateStrategy
    "UpdateStrategy": {
        "Stagger",
        "MaxParallel",
        "HealthCheck",
        "MinHealthyTime",
        "HealthyDeadline",
        "ProgressDeadline",
        "Canary",
        "AutoRevert",
        "AutoPromote",
    },
    # api/tasks.go type TaskGroup
    "TaskGroup": {
        "Name",
        "Count",
        "Constraints",
        "Affinities",
        "Tasks",
        "Spreads",
        "Volumes",
        "RestartPolicy",
        "Disconnect",
        "ReschedulePolicy",
        "EphemeralDisk",
        "Update",
        "Migrate",
        "Networks",
        "Meta",
        "Services",
        "ShutdownDelay",
        "StopAfterClientDisconnect",
        "MaxClientDisconnect",
        "Scaling",
        "Consul",
        "PreventRescheduleOnLost",
    },
    # api/scaling.go type ScalingPolicy
    "ScalingPolicy": {"ID", "Namespace", "Type", "Target", "Min", "Max", "Policy", "Enabled"},
    # api/tasks.go type RestartPolicy / ReschedulePolicy
    "RestartPolicy": {"Interval", "Attempts", "Delay", "Mode", "RenderTemplates"},
    "ReschedulePolicy": {"Attempts", "Interval", "Delay", "DelayFunction", "MaxDelay", "Unlimited"},
    # api/resources.go type NetworkResource / Port
    "NetworkResource": {
        "Mode",
        "Device",
        "CIDR",
        "IP",
        "DNS",
        "ReservedPorts",
        "DynamicPorts",
        "Hostname",
        "MBits",
        "CNI",
    },
    "Port": {"Label", "Value", "To", "HostNetwork", "IgnoreCollision"},
    # api/services.go type Service / ServiceCheck
    "Service": {
        "Name",
        "Tags",
        "CanaryTags",
        "EnableTagOverride",
        "PortLabel",
        "AddressMode",
        "Address",
        "Checks",
        "CheckRestart",
        "Connect",
        "Meta",
        "CanaryMeta",
        "TaggedAddresses",
        "TaskName",
        "OnUpdate",
        "Identity",
        "Weights",
        "Provider",
        "Cluster",
        "Kind",
    },
    "ServiceCheck": {
        "Name",
        "Type",
        "Command",
        "Args",
        "Path",
        "Protocol",
        "PortLabel",
        "Expose",
        "AddressMode",
        "Advertise",
        "Interval",
        "Timeout",
        "InitialStatus",
        "Notes",
        "TLSServerName",
        "TLSSkipVerify",
        "Header",
        "Method",
        "CheckRestart",
        "GRPCService",
        "GRPCUseTLS",
        "TaskName",
        "SuccessBeforePassing",
        "FailuresBeforeCritical",
        "FailuresBeforeWarning",
        "Body",
        "OnUpdate",
    },
    # api/tasks.go type Task
    "Task": {
        "Name",
        "Driver",
        "User",
        "Lifecycle",
        "Config",
        "Constraints",
        "Affinities",
        "Env",
        "Services",
        "Resources",
        "RestartPolicy",
        "Meta",
        "KillTimeout",
        "LogConfig",
        "Artifacts",
        "Vault",
        "Consul",
        "Templates",
        "DispatchPayload",
        "VolumeMounts",
        "CSIPluginConfig",
        "Leader",
        "ShutdownDelay",
        "KillSignal",
        "Kind",
        "ScalingPolicies",
        "Identity",
        "Identities",
        "Actions",
        "Schedule",
    },
    # api/tasks.go type Template
    "Template": {
        "SourcePath",
        "DestPath",
        "EmbeddedTmpl",
        "ChangeMode",
        "ChangeScript",
        "ChangeSignal",
        "Once",
        "Splay",
        "Perms",
        "Uid",
        "Gid",
        "LeftDelim",
        "RightDelim",
        "Envvars",
        "VaultGrace",
        "Wait",
        "ErrMissingKey",
    },
    # api/resources.go type Resources / RequestedDevice; api/constraint.go type Constraint
    "Resources": {
        "CPU",
        "Cores",
        "MemoryMB",
        "MemoryMaxMB",
        "DiskMB",
        "Networks",
        "Devices",
        "IOPS",
        "NUMA",
        "SecretsMB",
    },
    "RequestedDevice": {"Name", "Count", "Constraints", "Affinities"},
    "Constraint": {"LTarget", "RTarget", "Operand"},
    # api/tasks.go type Affinity
    "Affinity": {"LTarget", "RTarget", "Operand", "Weight"},
    # api/tasks.go type VolumeRequest / VolumeMount
    "VolumeRequest": {
        "Name",
        "Type",
        "Source",
        "ReadOnly",
        "Sticky",
        "AccessMode",
        "AttachmentMode",
        "MountOptions",
        "PerAlloc",
    },
    "VolumeMount": {"Volume", "Destination", "ReadOnly", "PropagationMode", "SELinuxLabel"},
    # Driver options (plugin config, lowercase): docker driver docs ("image", "ports",
    # "entrypoint"), raw_exec driver docs ("command", "args").
    "docker": {"image", "ports", "entrypoint"},
    "raw_exec": {"command", "args"},
}
# Which struct a key's value is (lists: of that struct); "map" = free-form string map.
NESTED: dict[tuple[str, str], str] = {
    ("Job", "Update"): "UpdateStrategy",
    ("Job", "TaskGroups"): "TaskGroup",
    ("Job", "Meta"): "map",
    ("TaskGroup", "Scaling"): "ScalingPolicy",
    ("TaskGroup", "RestartPolicy"): "RestartPolicy",
    ("TaskGroup", "ReschedulePolicy"): "ReschedulePolicy",
    ("TaskGroup", "Networks"): "NetworkResource",
    ("TaskGroup", "Services"): "Service",
    ("TaskGroup", "Tasks"): "Task",
    ("NetworkResource", "DynamicPorts"): "Port",
    ("Service", "Checks"): "ServiceCheck",
    ("Task", "Env"): "map",
    ("Task", "Templates"): "Template",
    ("Task", "Resources"): "Resources",
    ("Resources", "Devices"): "RequestedDevice",
    ("RequestedDevice", "Constraints"): "Constraint",
    ("RequestedDevice", "Affinities"): "Affinity",
    ("Job", "Affinities"): "Affinity",
    ("Job", "Constraints"): "Constraint",
    ("TaskGroup", "Constraints"): "Constraint",
    ("TaskGroup", "Affinities"): "Affinity",
    ("TaskGroup", "Volumes"): "map of VolumeRequest",  # map[string]*VolumeRequest, by label
    ("Task", "VolumeMounts"): "VolumeMount",
}
DURATIONS = {
    ("UpdateStrategy", "Stagger"),
    ("RestartPolicy", "Interval"),
    ("RestartPolicy", "Delay"),
    ("ReschedulePolicy", "Delay"),
    ("ReschedulePolicy", "MaxDelay"),
    ("ServiceCheck", "Interval"),
    ("ServiceCheck", "Timeout"),
    ("Task", "KillTimeout"),
    ("Template", "Splay"),
}


def check_fields(struct: str, obj: dict[str, Any], path: str = "Job") -> list[str]:
    problems = []
    for key, value in obj.items():
        if key not in ALLOWED[struct]:
            problems.append(f"{path}.{key} is not a field of api.{struct}")
            continue
        if (struct, key) in DURATIONS and not isinstance(value, int):
            problems.append(f"{path}.{key} must be integer nanoseconds, got {value!r}")
        if struct == "Task" and key == "Config":
            problems += check_fields(obj["Driver"], value, f"{path}.Config")
            continue
        inner = NESTED.get((struct, key))
        if inner is not None and inner.startswith("map of "):
            for label, item in value.items():
                problems += check_fields(inner.removeprefix("map of "), item, f"{path}.{key}[{label!r}]")
            continue
        if inner is None or inner == "map":
            if inner == "map":
                assert all(isinstance(v, str) for v in value.values()), f"{path}.{key} values must be strings"
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                problems += check_fields(inner, item, f"{path}.{key}[{i}]")
        else:
            problems += check_fields(inner, value, f"{path}.{key}")
    return problems


def example_specs() -> dict[str, EndpointSpec]:
    return load_endpoints(ROOT / "examples" / "endpoints")


@pytest.mark.parametrize("name", ["echo", "stream", "runpod-echo", "lb-hello"])
def test_example_matches_golden(name: str) -> None:
    spec = example_specs()[name]
    rendered = render_job(spec, SETTINGS)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("SKIFF_UPDATE_GOLDENS"):
        path.write_text(json.dumps(rendered, indent=2, sort_keys=True) + "\n")
    assert rendered == json.loads(path.read_text()), f"{path} differs: rerun with SKIFF_UPDATE_GOLDENS=1 if intended"


@pytest.mark.parametrize("name", ["echo", "stream", "runpod-echo", "lb-hello"])
def test_every_key_is_a_nomad_api_field(name: str) -> None:
    body = render_job(example_specs()[name], SETTINGS)
    assert set(body) == {"Job"}
    assert check_fields("Job", body["Job"]) == []


@pytest.mark.parametrize("name", ["echo", "stream", "runpod-echo", "lb-hello"])
def test_worker_key_comes_from_the_jobs_nomad_variable_not_env(name: str) -> None:
    """Anyone with read-job could read a key in Env (`nomad job inspect`); the task gets it from
    the Nomad Variable its own workload identity may read, through an env template."""
    job = render_job(example_specs()[name], SETTINGS)["Job"]
    (task,) = job["TaskGroups"][0]["Tasks"]
    assert "RUNPOD_AI_API_KEY" not in task["Env"]
    assert not any(v.startswith("skw_") for v in task["Env"].values())
    assert worker_key_variable(name) == f"nomad/jobs/{job['ID']}"
    assert task["Templates"] == [
        {
            "EmbeddedTmpl": f'{{{{ with nomadVar "nomad/jobs/skiff-{name}" }}}}RUNPOD_AI_API_KEY={{{{ .worker_key }}}}'
            "{{ end }}",
            "DestPath": "secrets/worker.env",
            "Envvars": True,
            "ChangeMode": "restart",
            "Perms": "0600",
        }
    ]
    # The rest of the worker API's environment is still there.
    assert task["Env"]["RUNPOD_POD_ID"] == "${NOMAD_ALLOC_ID}" and task["Env"]["RUNPOD_ENDPOINT_ID"] == name


def test_a_key_in_the_endpoints_own_env_is_not_rendered_either() -> None:
    spec = lb_gpu_spec(env={"RUNPOD_AI_API_KEY": "skw_llm_leak", "MODEL": "m"})
    for text in (json.dumps(render_job(spec, SETTINGS)), render_hcl(spec, SETTINGS)):
        assert "skw_llm_leak" not in text
    assert render_job(spec, SETTINGS)["Job"]["TaskGroups"][0]["Tasks"][0]["Env"]["MODEL"] == "m"


def test_field_check_catches_a_wrong_name() -> None:
    body = render_job(example_specs()["echo"], SETTINGS)
    body["Job"]["TaskGroups"][0]["Tasks"][0]["Resources"]["Memory"] = 10
    body["Job"]["TaskGroups"][0]["RestartPolicy"]["Delay"] = "5s"
    problems = check_fields("Job", body["Job"])
    assert any("Resources.Memory is not a field of api.Resources" in p for p in problems)
    assert any("Delay must be integer nanoseconds" in p for p in problems)


def lb_gpu_spec(**overrides: Any) -> EndpointSpec:
    fields: dict[str, Any] = {
        "name": "llm",
        "type": "load_balancer",
        "image": "ghcr.io/acme/llm:2",
        "command": ["python", "srv.py"],
        "gpu": {"count": 2, "models": ["NVIDIA A100-SXM4-80GB", "NVIDIA L40S"]},
        "resources": {"cpu_mhz": 4000, "memory_mb": 16384},
        "scaling": {"min_workers": 1, "max_workers": 8},
        "execution_timeout": "120s",
        "health_path": "/health",
    }
    fields.update(overrides)
    return EndpointSpec(**fields)


def test_load_balancer_gpu_job_shape() -> None:
    spec = lb_gpu_spec()
    job = render_job(spec, Settings(nomad_node_pool="gpu", nomad_region="eu", nomad_namespace="ml"))["Job"]
    assert check_fields("Job", job) == []
    assert (job["ID"], job["Type"], job["NodePool"], job["Region"], job["Namespace"]) == (
        "skiff-llm",
        "service",
        "gpu",
        "eu",
        "ml",
    )
    assert job["Update"] == {"MaxParallel": 0, "ProgressDeadline": 0}
    assert job["Meta"]["spec_hash"] == spec.spec_hash() and job["Meta"]["skiff_managed"] == "true"
    group = job["TaskGroups"][0]
    assert group["Count"] == 1 and group["Scaling"] == {"Enabled": True, "Min": 0, "Max": 8}
    assert group["Networks"] == [{"Mode": "host", "DynamicPorts": [{"Label": "http"}, {"Label": "health"}]}]
    service = group["Services"][0]
    assert (service["Name"], service["PortLabel"], service["Provider"]) == ("skiff-llm", "http", "consul")
    check = service["Checks"][0]
    assert (check["Type"], check["Path"], check["PortLabel"]) == ("http", "/health", "health")
    task = group["Tasks"][0]
    assert task["Driver"] == "docker" and task["Config"] == {"image": "ghcr.io/acme/llm:2", "ports": ["http", "health"]}
    assert task["KillTimeout"] == (120 + 15) * 10**9
    assert task["Env"]["RUNPOD_POD_ID"] == "${NOMAD_ALLOC_ID}" and task["Env"]["PORT"] == "${NOMAD_PORT_http}"
    assert task["Env"]["PORT_HEALTH"] == "${NOMAD_PORT_health}"
    device = task["Resources"]["Devices"][0]
    assert device == {
        "Name": "nvidia/gpu",
        "Count": 2,
        "Constraints": [
            {
                "LTarget": "${device.model}",
                "Operand": "set_contains_any",
                "RTarget": "NVIDIA A100-SXM4-80GB,NVIDIA L40S",
            }
        ],
        # The order of `models` is a preference (test_nomad_render_authoring.py).
        "Affinities": [
            {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA A100-SXM4-80GB", "Weight": 100},
            {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA L40S", "Weight": 50},
        ],
    }


def test_single_model_uses_equality_and_kill_timeout_is_capped() -> None:
    spec = lb_gpu_spec(gpu={"count": 1, "models": ["NVIDIA L4"]}, execution_timeout="10h")
    task = render_job(spec, SETTINGS)["Job"]["TaskGroups"][0]["Tasks"][0]
    assert task["Resources"]["Devices"][0]["Constraints"] == [
        {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA L4"}
    ]
    assert task["KillTimeout"] == (3600 + 15) * 10**9


def test_raw_exec_for_dev_agents() -> None:
    spec = example_specs()["echo"]
    task = render_job(spec, SETTINGS, RenderOptions(driver="raw_exec", workdir=ROOT))["Job"]["TaskGroups"][0]["Tasks"][
        0
    ]
    assert task["Driver"] == "raw_exec"
    assert task["Config"]["command"] == "/bin/sh"
    assert task["Config"]["args"][2:] == [str(ROOT), "python", "-u", "examples/workers/echo.py"]
    plain = render_job(spec, SETTINGS, RenderOptions(driver="raw_exec"))["Job"]["TaskGroups"][0]["Tasks"][0]
    assert plain["Config"] == {"command": "python", "args": ["-u", "examples/workers/echo.py"]}


@pytest.mark.parametrize(
    "image",
    [
        "redis",
        "redis:7",
        "ghcr.io/acme/echo-worker:0.1",
        "localhost:5000/a/b_c:v1.2",
        "docker.io/library/ubuntu@sha256:" + "a" * 64,
        "[::1]:5000/x:y",
    ],
)
def test_valid_image_references(image: str) -> None:
    assert validate_image_reference(image) == image


@pytest.mark.parametrize(
    "image",
    [
        "Ghcr.io/Acme/Echo",
        "acme/echo:",
        "acme//echo",
        "acme/echo:tag with space",
        "-acme/echo",
        "acme/echo@sha256:xyz",
        "",
        "acme/echo:" + "t" * 129,
    ],
)
def test_invalid_image_reference_is_refused_by_the_spec(image: str) -> None:
    with pytest.raises(ValidationError, match="invalid image reference"):
        lb_gpu_spec(image=image)
    # The renderer still refuses one that skipped validation (model_copy does not validate).
    with pytest.raises(ImageReferenceError, match="invalid image reference"):
        render_job(lb_gpu_spec().model_copy(update={"image": image}), SETTINGS)


def test_an_env_value_with_a_template_directive_renders_as_parseable_hcl() -> None:
    """`%{` opens an HCL template directive; `%%{` is the literal (HCL native syntax spec)."""
    spec = lb_gpu_spec(env={"FORMAT": "%{name} at ${NOMAD_ALLOC_ID}"})
    parsed = hcl2.load(io.StringIO(render_hcl(spec, SETTINGS)))
    ((_, body),) = parsed["job"][0].items()
    env = body["group"][0]['"worker"']["task"][0]['"worker"']["env"][0]
    assert env["FORMAT"] == '"%%{name} at ${NOMAD_ALLOC_ID}"'


def test_hcl_rendering_agrees_with_json() -> None:
    spec = lb_gpu_spec()
    job = render_job(spec, SETTINGS)["Job"]
    parsed = hcl2.load(io.StringIO(render_hcl(spec, SETTINGS)))

    def unq(v: Any) -> Any:
        if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
            return v[1:-1]
        if isinstance(v, list):
            return [unq(x) for x in v]
        return v

    ((name, body),) = parsed["job"][0].items()
    assert unq(name) == job["ID"]
    group_hcl = body["group"][0]['"worker"']
    task_hcl = group_hcl["task"][0]['"worker"']
    group = job["TaskGroups"][0]
    task = group["Tasks"][0]
    assert unq(body["datacenters"]) == job["Datacenters"]
    assert group_hcl["count"] == group["Count"] and group_hcl["scaling"][0]["max"] == group["Scaling"]["Max"]
    assert body["update"][0]["max_parallel"] == job["Update"]["MaxParallel"] == 0
    assert unq(body["update"][0]["progress_deadline"]) == "0s" and job["Update"]["ProgressDeadline"] == 0
    assert unq(task_hcl["driver"]) == task["Driver"]
    assert unq(task_hcl["config"][0]["image"]) == task["Config"]["image"]
    env = {k: unq(v) for k, v in task_hcl["env"][0].items() if not k.startswith("__")}
    assert env == task["Env"]
    (template_hcl,) = task_hcl["template"]
    (template,) = task["Templates"]
    assert unq(template_hcl["destination"]) == template["DestPath"]
    assert template_hcl["env"] is template["Envvars"] is True
    assert unq(template_hcl["change_mode"]) == template["ChangeMode"] and unq(template_hcl["perms"]) == "0600"
    # python-hcl2 keeps the HCL escapes of the quoted string: decode them as JSON does.
    assert json.loads(template_hcl["data"]) == template["EmbeddedTmpl"]
    device_hcl = task_hcl["resources"][0]["device"][0]['"nvidia/gpu"']
    assert unq(device_hcl["constraint"][0]["value"]) == task["Resources"]["Devices"][0]["Constraints"][0]["RTarget"]
    service_hcl = group_hcl["service"][0]
    assert unq(service_hcl["check"][0]["path"]) == group["Services"][0]["Checks"][0]["Path"]


def test_worker_template_file_is_the_rendering_of_its_reference_endpoint() -> None:
    """nomad/worker.nomad.hcl is `render_hcl` of the endpoint described in its header."""
    text = (ROOT / "nomad" / "worker.nomad.hcl").read_text()
    spec = lb_gpu_spec()
    settings = Settings(public_url="http://skiff-gateway.service.consul:8000")
    expected = render_hcl(spec, settings)
    body = text.split("\n\n", 1)[1] if text.startswith("# Skiff worker job template") else text
    assert body == expected, "nomad/worker.nomad.hcl is stale: regenerate it (see its header)"
    assert not re.search(r"RUNPOD_AI_API_KEY\s+=", text) and 'nomadVar \\"nomad/jobs/skiff-llm\\"' in text


def write_template() -> None:
    path = ROOT / "nomad" / "worker.nomad.hcl"
    header = path.read_text().split("\n\n", 1)[0]
    settings = Settings(public_url="http://skiff-gateway.service.consul:8000")
    path.write_text(header + "\n\n" + render_hcl(lb_gpu_spec(), settings))
