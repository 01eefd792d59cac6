"""The Nomad job files for Skiff's own services, parsed with python-hcl2, checked against what the
gateway and controller expect (Settings, the gateway's /healthz route, the worker renderer), and
the example CI workflow for the GitOps flow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from skiff_core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
NOMAD = ROOT / "nomad"
JOB_FILES = sorted(NOMAD.glob("*.nomad.hcl"))
OWN_JOBS = {
    "gateway.nomad.hcl": "skiff-gateway",
    "controller.nomad.hcl": "skiff-controller",
    "redis.nomad.hcl": "skiff-redis",
    "elasticmq.nomad.hcl": "skiff-elasticmq",
}


# --- loading (python-hcl2 8.x keeps quotes and adds __is_block__ / __comments__) ---------------
def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return _unquote(node) if isinstance(node, str) else node


def load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return _clean(hcl2.load(fh))


def labelled(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`group "a" {}` blocks come back as [{"a": {...}}]: make that {"a": {...}}."""
    return {label: body for entry in entries for label, body in entry.items()}


def one(body: dict[str, Any], key: str) -> dict[str, Any]:
    values = body.get(key, [])
    assert len(values) == 1, f"expected exactly one {key!r} block, found {len(values)}"
    return values[0]


def resolve(doc: dict[str, Any], value: Any) -> Any:
    """`${var.x}` -> the variable's default (what `nomad job run` uses without -var)."""
    if isinstance(value, str) and (m := re.fullmatch(r"\$\{var\.(\w+)\}", value)):
        return labelled(doc["variable"])[m.group(1)]["default"]
    return value


def job_of(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    doc = load(path)
    jobs = labelled(doc.get("job", []))
    assert len(jobs) == 1, f"{path.name}: expected one job, found {list(jobs)}"
    ((job_id, job),) = jobs.items()
    return job_id, job, doc


def tasks(job: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, dict[str, Any]]]:
    for group_name, group in labelled(job["group"]).items():
        for task_name, task in labelled(group["task"]).items():
            yield group_name, group, task_name, task


def templates_text(task: dict[str, Any]) -> str:
    return "\n".join(t.get("data", "") for t in task.get("template", []))


def env_of(task: dict[str, Any]) -> dict[str, str]:
    return one(task, "env") if task.get("env") else {}


# --- every job file, including ones other engineers own ----------------------------------------
def test_there_are_job_files_for_every_skiff_service() -> None:
    assert set(OWN_JOBS) <= {p.name for p in JOB_FILES}


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_job_file_parses_with_tasks_that_declare_driver_and_resources(path: Path) -> None:
    _job_id, job, doc = job_of(path)
    for name, var in labelled(doc.get("variable", [])).items():
        assert var.get("type") and var.get("description"), f"{path.name}: variable {name} needs type and description"
    found = list(tasks(job))
    assert found, f"{path.name}: no tasks"
    for _g, _group, task_name, task in found:
        assert task.get("driver"), f"{path.name}: task {task_name} has no driver"
        res = one(task, "resources")
        assert resolve(doc, res.get("cpu")) and resolve(doc, res.get("memory")), f"{task_name}: cpu/memory"


@pytest.mark.parametrize("name", sorted(OWN_JOBS))
def test_own_jobs_take_settings_and_secrets_from_their_own_nomad_variable(name: str) -> None:
    """Configuration is not baked in: every nomadVar a template reads is the job's own path (which
    its workload identity may read implicitly), and no SKIFF_* secret sits in an env block."""
    job_id, job, _doc = job_of(NOMAD / name)
    assert job_id == OWN_JOBS[name]
    settings_fields = {f"SKIFF_{f.upper()}" for f in Settings.model_fields}
    for _g, _group, _t, task in tasks(job):
        paths = set(re.findall(r'nomadVar "([^"]+)"', templates_text(task)))
        assert paths <= {f"nomad/jobs/{job_id}"}, paths
        env = env_of(task)
        for key, value in env.items():
            if key.startswith("SKIFF_"):
                assert key in settings_fields, f"{name}: {key} is not a Skiff setting (skiff_core.config)"
            assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET|REDIS_URL)$", key), f"{name}: secret {key} in env"
            del value


# --- gateway -----------------------------------------------------------------------------------
def test_gateway_runs_several_replicas_with_consul_http_check_on_healthz() -> None:
    _id, job, doc = job_of(NOMAD / "gateway.nomad.hcl")
    assert job["type"] == "service"
    ((_group_name, group, _t, task),) = tasks(job)
    assert resolve(doc, group["count"]) >= 2
    service = one(group, "service")
    assert service["name"] == "skiff-gateway" and service["provider"] == "consul"
    check = one(service, "check")
    assert check["type"] == "http" and check["path"] == "/healthz"
    # The check's port label is a port the group's network declares.
    ports = labelled(one(group, "network")["port"])
    assert service["port"] in ports
    # One replica per node: the port is static, so the group says distinct_hosts.
    assert any(c.get("operator") == "distinct_hosts" for c in group.get("constraint", []))
    config = one(task, "config")
    assert config["entrypoint"] == ["skiff"] and config["args"] == ["gateway"]
    env = env_of(task)
    assert env["SKIFF_HOST"] == "0.0.0.0"
    assert env["SKIFF_PORT"] == "${NOMAD_PORT_http}"


def test_gateway_route_port_and_load_balancer_agree() -> None:
    """The Consul check path is a route the gateway serves, the static port is Skiff's default
    SKIFF_PORT, and the Terraform load balancer targets and checks the same port and path."""
    import inspect

    import skiff_gateway.app

    assert '@app.get("/healthz"' in inspect.getsource(skiff_gateway.app)

    _id, job, doc = job_of(NOMAD / "gateway.nomad.hcl")
    ((_g, group, _t, _task),) = tasks(job)
    port = labelled(one(group, "network")["port"])["http"]
    assert resolve(doc, port["static"]) == Settings.model_fields["port"].default

    lb = load(ROOT / "terraform" / "modules" / "gateway-lb" / "variables.tf")
    assert labelled(lb["variable"])["gateway_port"]["default"] == Settings.model_fields["port"].default
    lb_main = (ROOT / "terraform" / "modules" / "gateway-lb" / "main.tf").read_text()
    assert 'path                = "/healthz"' in lb_main


def test_gateway_template_renders_env_from_nomad_variables() -> None:
    _id, job, _doc = job_of(NOMAD / "gateway.nomad.hcl")
    ((_g, _group, _t, task),) = tasks(job)
    env_templates = [t for t in task["template"] if t.get("env") is True]
    assert env_templates, "no template with env = true"
    data = env_templates[0]["data"]
    assert 'nomadVar "nomad/jobs/skiff-gateway"' in data and ".Tuples" in data
    assert env_templates[0]["destination"].startswith("${NOMAD_SECRETS_DIR}")


# --- controller --------------------------------------------------------------------------------
def test_controller_is_a_single_instance_nomad_and_consul_backed_with_workload_identity() -> None:
    _id, job, doc = job_of(NOMAD / "controller.nomad.hcl")
    ((_g, group, _t, task),) = tasks(job)
    assert group["count"] == 1
    config = one(task, "config")
    assert config["entrypoint"] == ["skiff"] and config["args"] == ["controller"]
    env = env_of(task)
    # Consul discovery is what turns on the Consul session leader lock in a cluster.
    assert env["SKIFF_ORCHESTRATOR"] == "nomad" and env["SKIFF_DISCOVERY"] == "consul"
    assert env["SKIFF_NOMAD_ADDR"].startswith("https://")
    assert one(task, "identity")["env"] is True  # NOMAD_TOKEN from workload identity
    assert resolve(doc, job["node_pool"]) == "system"


def test_controller_acl_policy_allows_managing_worker_jobs_only() -> None:
    policy = load(NOMAD / "policies" / "skiff-controller.policy.hcl")
    caps = set(labelled(policy["namespace"])["default"]["capabilities"])
    assert {"submit-job", "read-job", "list-jobs", "scale-job", "alloc-lifecycle"} <= caps
    assert not {"sentinel-override", "alloc-node-exec", "csi-write-volume"} & caps
    assert "operator" not in policy and "agent" not in policy and "node" not in policy


def test_controller_node_pool_setting_matches_the_gpu_pool_terraform_creates() -> None:
    """Workers the controller renders go to SKIFF_NOMAD_NODE_POOL; the example root passes the GPU
    pool's name, and the GPU pool is where the device plugin and model cache are."""
    outputs = (ROOT / "terraform" / "examples" / "aws" / "outputs.tf").read_text()
    assert "SKIFF_NOMAD_NODE_POOL   = module.gpu_pool.node_pool" in outputs
    main = (ROOT / "terraform" / "examples" / "aws" / "main.tf").read_text()
    assert re.search(r'module "gpu_pool" \{[^}]*node_pool\s+= "gpu"', main, re.S)


def test_worker_renderer_requests_the_device_the_gpu_clients_provide() -> None:
    """One source for the worker template: skiff_core.nomad.render asks for `nvidia/gpu` devices,
    which is what nomad-device-nvidia fingerprints (vendor nvidia, type gpu)."""
    from skiff_core.nomad.render import GPU_DEVICE

    assert GPU_DEVICE == "nvidia/gpu"
    user_data = (ROOT / "terraform" / "modules" / "gpu-clients" / "templates" / "client.sh.tftpl").read_text()
    assert 'plugin "nomad-device-nvidia"' in user_data


# --- Redis and ElasticMQ (clusters outside AWS) ------------------------------------------------
def test_redis_job_requires_a_password_from_nomad_variables_and_persists() -> None:
    _id, job, _doc = job_of(NOMAD / "redis.nomad.hcl")
    ((_g, group, _t, task),) = tasks(job)
    service = one(group, "service")
    assert service["name"] == "skiff-redis" and one(service, "check")["type"] == "tcp"
    assert labelled(one(group, "network")["port"])["redis"]["static"] == 6379
    conf = templates_text(task)
    assert re.search(r"requirepass \{\{ \.password \}\}", conf)
    assert "appendonly yes" in conf
    assert one(task, "volume_mount")["volume"] in labelled(group["volume"])


def test_elasticmq_job_serves_sqs_on_9324_with_persistent_storage() -> None:
    _id, job, _doc = job_of(NOMAD / "elasticmq.nomad.hcl")
    ((_g, group, _t, task),) = tasks(job)
    assert one(group, "service")["name"] == "skiff-elasticmq"
    assert labelled(one(group, "network")["port"])["sqs"]["static"] == 9324
    conf = templates_text(task)
    assert "messages-storage" in conf and "queues-storage" in conf
    assert one(one(task, "config"), "mount")["target"] == "/opt/elasticmq.conf"


# --- GitOps: the example CI workflow -----------------------------------------------------------
def test_ci_workflow_validates_on_pull_requests_and_deploys_on_main() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "endpoints.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert "endpoints/**" in triggers["pull_request"]["paths"]
    assert triggers["push"]["branches"] == ["main"] and "endpoints/**" in triggers["push"]["paths"]
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    validate_runs = " ".join(s.get("run", "") for s in jobs["validate"]["steps"])
    assert "skiff validate endpoints/" in validate_runs
    deploy = jobs["deploy"]
    assert "refs/heads/main" in deploy["if"] and deploy["needs"] == "validate"
    assert deploy["concurrency"]["cancel-in-progress"] is False  # never cut a deploy in half
    deploy_runs = " ".join(s.get("run", "") for s in deploy["steps"])
    assert "skiff deploy endpoints/" in deploy_runs
    assert deploy["env"]["NOMAD_ADDR"] == "${{ secrets.NOMAD_ADDR }}"
    assert deploy["env"]["NOMAD_TOKEN"] == "${{ secrets.NOMAD_TOKEN }}"
    for step in [*jobs["validate"]["steps"], *deploy["steps"]]:
        if "uses" in step:
            assert re.search(r"@v\d", step["uses"]), f"unpinned action {step['uses']}"


def test_consul_names_used_in_job_files_are_services_registered_in_nomad_dir() -> None:
    """One source of names: an address like `<service>.service.consul` in any job file (the worker
    template's gateway URL included) must name a service some job in nomad/ registers, or an
    endpoint's own `skiff-<endpoint>` service."""
    registered = set()
    for path in JOB_FILES:
        _id, job, _doc = job_of(path)
        for _g, group, _t, task in tasks(job):
            registered |= {s["name"] for s in [*group.get("service", []), *task.get("service", [])]}
    assert "skiff-gateway" in registered
    for path in JOB_FILES:
        for name in re.findall(r"([a-z0-9-]+)\.service\.consul", path.read_text()):
            assert name in registered, f"{path.name} refers to {name}.service.consul, which no job registers"
