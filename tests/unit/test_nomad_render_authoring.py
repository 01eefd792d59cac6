"""The rendered Nomad job for what an endpoint file says beyond its code: volumes, secrets, GPU
preference, datacenters; every key checked against Nomad's api structs (test_nomad_render.ALLOWED)."""

from __future__ import annotations

import io
from typing import Any

import hcl2

from skiff_core.nomad.prepull import render_prepull_job
from skiff_core.nomad.render import MANAGED_META_KEY, endpoint_of_job, render_hcl, render_job
from skiff_core.spec import NAME_RE, EndpointSpec
from tests.unit.test_nomad_render import SETTINGS, check_fields


def _spec(**fields: Any) -> EndpointSpec:
    return EndpointSpec.model_validate(
        {"name": "llm", "image": "ghcr.io/acme/llm:1", "command": ["python", "-u", "handler.py"], **fields}
    )


def _job(spec: EndpointSpec) -> dict[str, Any]:
    job: dict[str, Any] = render_job(spec, SETTINGS)["Job"]
    assert check_fields("Job", job) == []
    return job


def _hcl(spec: EndpointSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(job body, group body, task body) of the HCL rendering, as python-hcl2 reads them."""
    parsed = hcl2.load(io.StringIO(render_hcl(spec, SETTINGS)))
    ((_, body),) = parsed["job"][0].items()
    group = body["group"][0]['"worker"']
    return body, group, group["task"][0]['"worker"']


def _unq(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


VOLUMES = {
    "models": {"source": "model-cache"},
    "data": {"source": "datasets", "type": "csi", "path": "/data", "read_only": True},
}


def test_volumes_are_group_volumes_mounted_in_the_task() -> None:
    job = _job(_spec(volume=VOLUMES))
    group = job["TaskGroups"][0]
    task = group["Tasks"][0]
    assert group["Volumes"] == {
        "models": {"Name": "models", "Type": "host", "Source": "model-cache", "ReadOnly": False},
        "data": {
            "Name": "data",
            "Type": "csi",
            "Source": "datasets",
            "ReadOnly": True,
            "AccessMode": "multi-node-reader-only",
            "AttachmentMode": "file-system",
        },
    }
    assert task["VolumeMounts"] == [
        {"Volume": "models", "Destination": "/runpod-volume", "ReadOnly": False},
        {"Volume": "data", "Destination": "/data", "ReadOnly": True},
    ]
    # The handler finds each volume the same way in a cluster and under `skiff up`.
    assert task["Env"]["SKIFF_VOLUME_MODELS"] == "/runpod-volume"
    assert task["Env"]["SKIFF_VOLUME_DATA"] == "/data"


def test_no_volumes_no_keys() -> None:
    group = _job(_spec())["TaskGroups"][0]
    assert "Volumes" not in group and "VolumeMounts" not in group["Tasks"][0]


def test_volumes_in_hcl_agree_with_json() -> None:
    _, group, task = _hcl(_spec(volume=VOLUMES))
    volumes = {_unq(label): body for block in group["volume"] for label, body in block.items()}
    assert _unq(volumes["models"]["source"]) == "model-cache" and _unq(volumes["models"]["type"]) == "host"
    assert _unq(volumes["data"]["access_mode"]) == "multi-node-reader-only"
    assert volumes["data"]["read_only"] is True
    mounts = [(_unq(m["volume"]), _unq(m["destination"]), m["read_only"]) for m in task["volume_mount"]]
    assert mounts == [("models", "/runpod-volume", False), ("data", "/data", True)]


def test_secrets_come_from_a_nomad_variable_template_never_the_job() -> None:
    job = _job(_spec(secrets=["HF_TOKEN", "WANDB_API_KEY"], env={"MODEL_ID": "tiny"}))
    task = job["TaskGroups"][0]["Tasks"][0]
    assert "HF_TOKEN" not in task["Env"] and "WANDB_API_KEY" not in task["Env"]
    key_template, secrets_template = task["Templates"]
    assert key_template["DestPath"] == "secrets/worker.env"
    assert secrets_template == {
        # The group's own variable path: its tasks read it with no ACL policy.
        "EmbeddedTmpl": '{{ with nomadVar "nomad/jobs/skiff-llm/worker" }}\n'
        "HF_TOKEN={{ .HF_TOKEN }}\nWANDB_API_KEY={{ .WANDB_API_KEY }}\n{{ end }}",
        "DestPath": "secrets/endpoint.env",
        "Envvars": True,
        "ChangeMode": "restart",
        "Perms": "0600",
        "ErrMissingKey": True,
    }


def test_no_secrets_no_second_template() -> None:
    assert len(_job(_spec())["TaskGroups"][0]["Tasks"][0]["Templates"]) == 1


def test_secrets_template_in_hcl_agrees_with_json() -> None:
    spec = _spec(secrets=["HF_TOKEN"])
    task = _job(spec)["TaskGroups"][0]["Tasks"][0]
    _, _, task_hcl = _hcl(spec)
    second = task_hcl["template"][1]
    assert _unq(second["destination"]) == "secrets/endpoint.env"
    assert second["error_on_missing_key"] is True and second["env"] is True
    assert "HF_TOKEN={{ .HF_TOKEN }}" in second["data"] and task["Templates"][1]["EmbeddedTmpl"].startswith(
        '{{ with nomadVar "nomad/jobs/skiff-llm/worker" }}'
    )


def test_gpu_models_are_the_allowed_set_and_an_ordered_preference() -> None:
    spec = _spec(gpu={"count": 1, "models": ["NVIDIA H100", "NVIDIA A100", "NVIDIA L4"]})
    (device,) = _job(spec)["TaskGroups"][0]["Tasks"][0]["Resources"]["Devices"]
    assert device["Constraints"] == [
        {"LTarget": "${device.model}", "Operand": "set_contains_any", "RTarget": "NVIDIA H100,NVIDIA A100,NVIDIA L4"}
    ]
    assert device["Affinities"] == [
        {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA H100", "Weight": 100},
        {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA A100", "Weight": 67},
        {"LTarget": "${device.model}", "Operand": "=", "RTarget": "NVIDIA L4", "Weight": 33},
    ]
    _, _, task = _hcl(spec)
    device_hcl = task["resources"][0]["device"][0]['"nvidia/gpu"']
    weights = [(_unq(a["value"]), a["weight"]) for a in device_hcl["affinity"]]
    assert weights == [("NVIDIA H100", 100), ("NVIDIA A100", 67), ("NVIDIA L4", 33)]


def test_one_model_or_many_weights_stay_valid() -> None:
    (one,) = _job(_spec(gpu={"models": ["NVIDIA L4"]}))["TaskGroups"][0]["Tasks"][0]["Resources"]["Devices"]
    assert "Affinities" not in one
    many = [f"GPU {i}" for i in range(150)]
    (device,) = _job(_spec(gpu={"models": many}))["TaskGroups"][0]["Tasks"][0]["Resources"]["Devices"]
    weights = [a["Weight"] for a in device["Affinities"]]
    # structs.Affinity.Validate: non-zero, within [-100, 100]; never rising.
    assert all(1 <= w <= 100 for w in weights) and weights == sorted(weights, reverse=True)


def test_datacenters_per_endpoint() -> None:
    assert _job(_spec())["Datacenters"] == ["dc1"]  # the setting
    job = _job(_spec(datacenters=["gpu-east", "gpu-west"]))
    assert job["Datacenters"] == ["gpu-east", "gpu-west"]
    body, _, _ = _hcl(_spec(datacenters=["gpu-east"]))
    assert [_unq(dc) for dc in body["datacenters"]] == ["gpu-east"]


def test_the_prepull_job_pulls_the_image_once_per_eligible_node() -> None:
    spec = _spec(datacenters=["gpu-east"], gpu={"models": ["NVIDIA L4"]})
    job = render_prepull_job(spec, SETTINGS.model_copy(update={"nomad_node_pool": "gpu"}))["Job"]
    assert check_fields("Job", job) == []
    assert job["ID"] == "skiff-prepull.llm" and job["Type"] == "sysbatch"
    # Never mistaken for an endpoint's job: no managed meta, and no endpoint name has a dot.
    assert endpoint_of_job(job["ID"]) == "prepull.llm" and not NAME_RE.match("prepull.llm")
    assert MANAGED_META_KEY not in job["Meta"] and job["Meta"]["skiff_prepull_of"] == "llm"
    assert job["Datacenters"] == ["gpu-east"] and job["NodePool"] == "gpu"
    assert job["Constraints"] == [{"LTarget": "${attr.driver.docker}", "Operand": "is_set"}]
    (group,) = job["TaskGroups"]
    (task,) = group["Tasks"]
    assert task["Driver"] == "docker" and task["Config"] == {"image": "ghcr.io/acme/llm:1", "entrypoint": ["true"]}
    assert group["RestartPolicy"] == {"Attempts": 0, "Mode": "fail"}
