"""Structure, security and formatting checks over terraform/.

Every `.tf` file is parsed with python-hcl2 (8.x: string values keep their quotes, blocks carry
`__is_block__`, comments come back as `__comments__`; `_clean` undoes all three). Each check is a
function returning a list of problems; the tests run it on the real tree (no problems) and on a
small broken fixture (the problem is found), so a check that stopped checking would fail too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "terraform"
MODULES = sorted(p for p in (TF_ROOT / "modules").iterdir() if p.is_dir())
EXAMPLE = TF_ROOT / "examples" / "aws"
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")
EXPECTED_MODULES = {"network", "nomad-servers", "gpu-clients", "queues", "redis", "payloads", "iam"}

# Ports that must never face the internet: Nomad HTTP/RPC/Serf, Consul server RPC/Serf LAN+WAN,
# HTTP/HTTPS/gRPC APIs and DNS, Redis.
SENSITIVE_PORTS = {4646, 4647, 4648, 8300, 8301, 8302, 8500, 8501, 8502, 8503, 8600, 6379}
WORLD = {"0.0.0.0/0", "::/0"}
SECRET_KEY_RE = re.compile(
    r"(^|_)(password|passwd|secret|token|auth_token|api_key|private_key|secret_key|access_key)$", re.I
)
SECRET_VALUE_RES = (
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),  # ACL token shape
)
# Actions without resource-level permissions, the only ones allowed on Resource "*".
STAR_RESOURCE_ACTIONS = {"ec2:DescribeInstances", "ec2:DescribeTags", "ecr:GetAuthorizationToken"}


# --- loading -----------------------------------------------------------------------------------
def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return _clean(hcl2.load(fh))


def load_text(text: str) -> dict[str, Any]:
    return _clean(hcl2.loads(text))


def blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of every `kind "label" {}` block (variable, output, module)."""
    for entry in doc.get(kind, []):
        yield from entry.items()


def resources(doc: dict[str, Any], kind: str = "resource") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every resource (or data) block."""
    for entry in doc.get(kind, []):
        for rtype, named in entry.items():
            for name, body in named.items():
                yield rtype, name, body


def module_docs(directory: Path) -> dict[str, Any]:
    """All .tf files of one module merged: block lists concatenated."""
    merged: dict[str, list[Any]] = {}
    for tf in sorted(directory.glob("*.tf")):
        for key, value in load_hcl(tf).items():
            merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def all_module_dirs() -> list[Path]:
    return [*MODULES, EXAMPLE]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


# --- checks ------------------------------------------------------------------------------------
def variable_problems(doc: dict[str, Any], where: str) -> list[str]:
    problems = []
    for name, body in blocks(doc, "variable"):
        if not body.get("type"):
            problems.append(f"{where}: variable {name!r} has no type")
        if not str(body.get("description", "")).strip():
            problems.append(f"{where}: variable {name!r} has no description")
    return problems


def module_layout_problems(directory: Path) -> list[str]:
    problems = [f"{directory.name}: missing {f}" for f in MODULE_FILES if not (directory / f).is_file()]
    if (directory / "outputs.tf").is_file():
        outputs = list(blocks(load_hcl(directory / "outputs.tf"), "output"))
        if not outputs:
            problems.append(f"{directory.name}: outputs.tf declares no output")
        problems += [
            f"{directory.name}: output {n!r} has no description" for n, b in outputs if not b.get("description")
        ]
    readme = directory / "README.md"
    if readme.is_file() and len(readme.read_text().split()) < 40:
        problems.append(f"{directory.name}: README.md is a stub")
    return problems


def _walk_attrs(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, f"{path}.{key}", value
            yield from _walk_attrs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk_attrs(value, f"{path}[{i}]")


def secret_literal_problems(doc: dict[str, Any], where: str) -> list[str]:
    """An attribute named like a secret must be an expression (a variable, a generated value), never
    a string literal; anything else is a credential committed to git."""
    problems = []
    for key, path, value in _walk_attrs(doc):
        if not SECRET_KEY_RE.search(key) or not isinstance(value, str):
            continue
        if value.startswith("${") or value in ("", "null"):
            continue
        problems.append(f"{where}: {path} is a string literal")
    return problems


def secret_text_problems(text: str, where: str) -> list[str]:
    return [f"{where}: looks like a committed secret ({rx.pattern})" for rx in SECRET_VALUE_RES if rx.search(text)]


def _var_refs(expr: Any) -> set[str]:
    return set(re.findall(r"var\.([A-Za-z0-9_-]+)", str(expr)))


def _cidr_may_be_world(expr: Any, body: dict[str, Any], variables: dict[str, dict[str, Any]]) -> bool:
    """Conservative: a CIDR expression is safe only when it is literal and not the world, or comes
    from variables whose default excludes the world and whose validation forbids it."""
    text = str(expr)
    if any(w in text for w in WORLD):
        return True
    if "each." in text:  # for_each over a collection: judge the collection
        text = str(body.get("for_each", ""))
    for name in _var_refs(text):
        var = variables.get(name, {})
        default = var.get("default")
        if default is not None and any(w in str(default) for w in WORLD):
            return True
        validations = str(var.get("validation", ""))
        if "0.0.0.0/0" not in validations:
            return True
    return False


def _port_range(body: dict[str, Any]) -> tuple[int, int] | None:
    """(from, to) when literal; None when dynamic. Protocol "-1" means every port."""
    if str(body.get("ip_protocol", body.get("protocol", ""))) in ("-1", "all"):
        return (0, 65535)
    lo, hi = body.get("from_port"), body.get("to_port")
    if isinstance(lo, int) and isinstance(hi, int):
        return (lo, hi)
    return None


def _exposes_sensitive(rng: tuple[int, int] | None) -> bool:
    if rng is None:
        return True
    return any(rng[0] <= p <= rng[1] for p in SENSITIVE_PORTS)


def open_port_problems(doc: dict[str, Any], where: str) -> list[str]:
    variables = dict(blocks(doc, "variable"))
    problems = []
    for rtype, name, body in resources(doc):
        rules: list[tuple[Any, dict[str, Any]]] = []
        if rtype == "aws_vpc_security_group_ingress_rule" and "cidr_ipv4" in body:
            rules.append((body["cidr_ipv4"], body))
        elif rtype == "aws_vpc_security_group_ingress_rule" and "cidr_ipv6" in body:
            rules.append((body["cidr_ipv6"], body))
        elif rtype == "aws_security_group_rule" and body.get("type") == "ingress":
            rules.append((body.get("cidr_blocks", []), body))
        elif rtype == "aws_security_group":
            rules += [(ing.get("cidr_blocks", []), ing) for ing in body.get("ingress", [])]
        for cidr, rule in rules:
            if _cidr_may_be_world(cidr, {**body, **rule}, variables) and _exposes_sensitive(_port_range(rule)):
                problems.append(f"{where}: {rtype}.{name} may open {_port_range(rule)} to the internet")
    return problems


def encryption_problems(doc: dict[str, Any], where: str) -> list[str]:
    res = list(resources(doc))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for rtype, _name, body in res:
        by_type.setdefault(rtype, []).append(body)
    problems = []

    for bucket in by_type.get("aws_s3_bucket", []):
        del bucket
        sse = by_type.get("aws_s3_bucket_server_side_encryption_configuration", [])
        algos = {
            _first(_first(r.get("rule")).get("apply_server_side_encryption_by_default")).get("sse_algorithm")
            for r in sse
        }
        if not algos or not algos <= {"aws:kms", "AES256", "aws:kms:dsse"}:
            problems.append(f"{where}: S3 bucket without server-side encryption")
        pab = by_type.get("aws_s3_bucket_public_access_block", [])
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        if not pab or not all(p.get(f) is True for p in pab for f in flags):
            problems.append(f"{where}: S3 bucket without a full public access block")
        lifecycle = by_type.get("aws_s3_bucket_lifecycle_configuration", [])
        if not any(r.get("expiration") for lc in lifecycle for r in lc.get("rule", [])):
            problems.append(f"{where}: S3 bucket without lifecycle expiry")

    for rg in by_type.get("aws_elasticache_replication_group", []):
        if rg.get("at_rest_encryption_enabled") is not True:
            problems.append(f"{where}: ElastiCache without encryption at rest")
        if rg.get("transit_encryption_enabled") is not True:
            problems.append(f"{where}: ElastiCache without encryption in transit")
        if not str(rg.get("auth_token", "")).startswith("${"):
            problems.append(f"{where}: ElastiCache without a generated auth token")

    for lt in by_type.get("aws_launch_template", []):
        mappings = list(lt.get("block_device_mappings", []))
        for dyn in lt.get("dynamic", []):
            mappings += [c for _n, b in dyn.items() for c in b.get("content", [])]
        for mapping in mappings:
            for ebs in mapping.get("ebs", []):
                if ebs.get("encrypted") is not True:
                    problems.append(f"{where}: launch template EBS volume not encrypted")
        if _first(lt.get("metadata_options", [{}])).get("http_tokens") != "required":
            problems.append(f"{where}: launch template allows IMDSv1")

    for q in by_type.get("aws_sqs_queue", []):
        if q.get("sqs_managed_sse_enabled") is not True and not q.get("kms_master_key_id"):
            problems.append(f"{where}: SQS queue without server-side encryption")

    for key in by_type.get("aws_kms_key", []):
        if key.get("enable_key_rotation") is not True:
            problems.append(f"{where}: KMS key without rotation")
    return problems


def iam_problems(doc: dict[str, Any], where: str) -> list[str]:
    """Least privilege: no wildcard actions in Allow statements, Resource "*" only for actions that
    have no resource-level permissions."""
    problems = []
    for rtype, name, body in resources(doc, "data"):
        if rtype != "aws_iam_policy_document":
            continue
        for stmt in body.get("statement", []):
            if stmt.get("effect", "Allow") == "Deny":
                continue
            actions = stmt.get("actions", [])
            if any("*" in a for a in actions):
                problems.append(f"{where}: {name} allows wildcard actions {actions}")
            if "*" in stmt.get("resources", []) and not set(actions) <= STAR_RESOURCE_ACTIONS:
                problems.append(f"{where}: {name} grants {actions} on Resource '*'")
    return problems


# --- agent configs embedded in user data -------------------------------------------------------
def template_vars(module: Path) -> list[str]:
    """Names the module passes to templatefile() in its main.tf."""
    text = (module / "main.tf").read_text()
    call = re.search(r"templatefile\([^{]*\{(.*?)\}\)\)", text, re.S)
    assert call, f"{module.name}: no templatefile() call"
    return re.findall(r"^\s*(\w+)\s*=", call.group(1), re.M)


def render_user_data(module: Path, template: Path, **overrides: object) -> str:
    """Render a user-data template with Terraform's own templatefile() (via `terraform console`,
    which needs no provider), passing exactly the names the module passes."""
    values: dict[str, object] = {name: "x" for name in template_vars(module)}
    typed: dict[str, object] = {
        "retry_join": "provider=aws tag_key=skiff-server tag_value=test",
        "server_count": 3,
        "enable_gpu": True,
        "model_cache_volume": True,
        **overrides,
    }
    values.update({k: v for k, v in typed.items() if k in values})
    items = ", ".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v if isinstance(v, int) else chr(34) + str(v) + chr(34)}"
        for k, v in values.items()
    )
    # An empty working directory: console needs no provider there.
    with tempfile.TemporaryDirectory() as empty:
        result = _run([_terraform(), "console"], Path(empty), stdin=f'templatefile("{template}", {{{items}}})\n')
    assert result.returncode == 0, f"templatefile() failed for {template.name}: {result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "<<EOT" and lines[-1] == "EOT", result.stdout[:200]
    return "\n".join(lines[1:-1]) + "\n"


def embedded_configs(script: str) -> dict[str, dict[str, Any]]:
    """The Nomad and Consul agent configs a bootstrap script writes (`cat > X <<CONF ... CONF`),
    shell variables replaced, parsed as HCL."""
    found = {}
    for dest, body in re.findall(r"cat > (\S+) <<CONF\n(.*?)\nCONF\n", script, re.S):
        body = re.sub(r"\$[A-Z_]+", "PLACEHOLDER", body)
        found[dest] = load_text(body + "\n")
    return found


def agent_security_problems(configs: dict[str, dict[str, Any]], role: str) -> list[str]:
    problems = []
    nomad = configs.get("/etc/nomad.d/nomad.hcl")
    consul = configs.get("/etc/consul.d/consul.hcl")
    if nomad is None or consul is None:
        return [f"{role}: user data writes no Nomad or no Consul config"]
    tls = _first(nomad.get("tls", [{}]))
    if not (tls.get("http") is True and tls.get("rpc") is True and tls.get("verify_server_hostname") is True):
        problems.append(f"{role}: Nomad TLS not on for HTTP and RPC with hostname verification")
    if _first(nomad.get("acl", [{}])).get("enabled") is not True:
        problems.append(f"{role}: Nomad ACLs off")
    if role == "server" and not _first(nomad.get("server", [{}])).get("encrypt"):
        problems.append("server: Nomad gossip encryption off")
    if not consul.get("encrypt") or consul.get("encrypt_verify_incoming") is not True:
        problems.append(f"{role}: Consul gossip encryption off")
    ctls = _first(consul.get("tls", [{}]))
    if _first(ctls.get("defaults", [{}])).get("verify_outgoing") is not True:
        problems.append(f"{role}: Consul TLS not verified")
    if _first(ctls.get("internal_rpc", [{}])).get("verify_server_hostname") is not True:
        problems.append(f"{role}: Consul RPC hostname verification off")
    acl = _first(consul.get("acl", [{}]))
    if acl.get("enabled") is not True or acl.get("default_policy") != "deny":
        problems.append(f"{role}: Consul ACLs not default-deny")
    if "retry_join" not in consul or "provider=aws" not in str(consul["retry_join"]):
        problems.append(f"{role}: Consul does not use cloud auto-join")
    return problems


# --- tests: the real tree ----------------------------------------------------------------------
def test_every_required_module_exists_with_files_outputs_and_readme() -> None:
    assert {m.name for m in MODULES} >= EXPECTED_MODULES
    problems = [p for m in MODULES for p in module_layout_problems(m)]
    assert problems == []
    for f in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "terraform.tfvars.example"):
        assert (EXAMPLE / f).is_file(), f"examples/aws/{f} missing"


@pytest.mark.parametrize("directory", all_module_dirs(), ids=lambda p: p.name)
def test_module_is_typed_described_secret_free_closed_and_encrypted(directory: Path) -> None:
    doc = module_docs(directory)
    problems = (
        variable_problems(doc, directory.name)
        + secret_literal_problems(doc, directory.name)
        + open_port_problems(doc, directory.name)
        + encryption_problems(doc, directory.name)
        + iam_problems(doc, directory.name)
    )
    assert problems == []


def test_no_secret_values_anywhere_in_terraform_or_nomad_files() -> None:
    files = [
        *TF_ROOT.rglob("*.tf"),
        *TF_ROOT.rglob("*.tftpl"),
        *TF_ROOT.rglob("*.example"),
        *(ROOT / "nomad").rglob("*.hcl"),
    ]
    assert files
    problems = [p for f in files for p in secret_text_problems(f.read_text(), str(f.relative_to(ROOT)))]
    assert problems == []


def test_encryption_resources_are_actually_present() -> None:
    """The generic checks pass vacuously on a module without the resource: pin the ones that must
    exist."""
    types = {
        name: {t for t, _n, _b in resources(module_docs(TF_ROOT / "modules" / name))}
        for name in ("payloads", "redis", "nomad-servers", "gpu-clients", "iam")
    }
    assert {
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_lifecycle_configuration",
    } <= types["payloads"]
    assert "aws_elasticache_replication_group" in types["redis"]
    assert "aws_launch_template" in types["nomad-servers"]
    assert "aws_launch_template" in types["gpu-clients"]
    assert "aws_kms_key" in types["iam"]


def test_queues_module_scopes_controller_created_queues_by_prefix() -> None:
    """The chosen design: the controller creates queues, IAM confines it to the prefix, and it
    must turn SSE on."""
    doc = module_docs(TF_ROOT / "modules" / "queues")
    assert not any(t == "aws_sqs_queue" for t, _n, _b in resources(doc))
    docs = {n: b for t, n, b in resources(doc, "data") if t == "aws_iam_policy_document"}
    controller_actions = {a for s in docs["controller"]["statement"] for a in s["actions"]}
    gateway_actions = {a for s in docs["gateway"]["statement"] for a in s["actions"]}
    assert {"sqs:CreateQueue", "sqs:DeleteQueue", "sqs:SetQueueAttributes"} <= controller_actions
    assert "sqs:ReceiveMessage" not in controller_actions  # the controller never reads messages
    assert {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= gateway_actions
    assert "sqs:CreateQueue" not in gateway_actions
    for body in docs.values():
        for stmt in body["statement"]:
            assert stmt["resources"] == ["${local.queue_arn_pattern}"]
    local = next(iter(doc["locals"]))["queue_arn_pattern"]
    assert local.endswith(":${var.queue_prefix}*")
    outputs = dict(blocks(doc, "output"))
    assert "SqsManagedSseEnabled" in str(outputs["required_queue_attributes"]["value"])


def test_gpu_clients_install_driver_toolkit_docker_and_device_plugin() -> None:
    text = (TF_ROOT / "modules" / "gpu-clients" / "templates" / "client.sh.tftpl").read_text()
    for needle in (
        "nvidia-driver-",
        "nvidia-container-toolkit",
        "nvidia-ctk runtime configure --runtime=docker",
        "docker-ce",
        "releases.hashicorp.com/nomad-device-nvidia/",
        "/opt/nomad/plugins",
    ):
        assert needle in text, needle
    module = TF_ROOT / "modules" / "gpu-clients"
    nomad = embedded_configs(render_user_data(module, module / "templates" / "client.sh.tftpl", enable_gpu=True))[
        "/etc/nomad.d/nomad.hcl"
    ]
    plugins = {label: body for entry in nomad["plugin"] for label, body in entry.items()}
    assert _first(plugins["nomad-device-nvidia"]["config"])["enabled"] is True
    client = _first(nomad["client"])
    volumes = {label for entry in client["host_volume"] for label in entry}
    assert volumes == {"skiff-model-cache"}
    outputs = dict(blocks(module_docs(TF_ROOT / "modules" / "gpu-clients"), "output"))
    assert outputs["model_cache_host_volume"]["value"] == "skiff-model-cache"


def test_gpu_clients_autoscaling_group_mixes_instance_types_with_optional_spot() -> None:
    doc = module_docs(TF_ROOT / "modules" / "gpu-clients")
    asg = next(b for t, _n, b in resources(doc) if t == "aws_autoscaling_group")
    policy = _first(asg["mixed_instances_policy"])
    overrides = _first(_first(policy["launch_template"])["dynamic"])["override"]
    assert overrides["for_each"] == "${var.instance_types}"
    dist = _first(policy["instances_distribution"])
    assert dist["on_demand_percentage_above_base_capacity"] == "${local.spot_percent}"
    spot_percent = next(iter(doc["locals"]))["spot_percent"]
    assert "var.use_spot" in spot_percent and "0" in spot_percent
    variables = dict(blocks(doc, "variable"))
    assert variables["use_spot"]["default"] is False
    assert variables["instance_types"]["type"] == "${list(string)}"


def test_gpu_clients_allow_the_kill_timeout_the_worker_renderer_asks_for() -> None:
    """render.py gives a stopped worker up to its execution timeout (capped) plus a grace period;
    Nomad clients cap kill_timeout at max_kill_timeout, so the pool must allow at least that."""
    from skiff_core.durations import parse_duration
    from skiff_core.nomad.render import kill_timeout_s
    from skiff_core.spec import EndpointSpec

    longest = kill_timeout_s(EndpointSpec(name="long", image="ghcr.io/a/b:1", execution_timeout=10**7))
    variables = dict(blocks(module_docs(TF_ROOT / "modules" / "gpu-clients"), "variable"))
    assert parse_duration(variables["max_kill_timeout"]["default"]) >= longest


USER_DATA = {
    "server": ("nomad-servers", "server.sh.tftpl", {}),
    "gpu client": ("gpu-clients", "client.sh.tftpl", {"enable_gpu": True, "model_cache_volume": True}),
    "system client": ("gpu-clients", "client.sh.tftpl", {"enable_gpu": False, "model_cache_volume": False}),
}


@pytest.mark.parametrize("role", list(USER_DATA))
def test_user_data_renders_is_valid_bash_and_secures_the_agents(role: str) -> None:
    module_name, template_name, overrides = USER_DATA[role]
    module = TF_ROOT / "modules" / module_name
    script = render_user_data(module, module / "templates" / template_name, **overrides)
    bash = shutil.which("bash")
    assert bash, "bash is required to syntax-check the user data"
    syntax = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, f"rendered {template_name} is not valid bash: {syntax.stderr}"
    configs = embedded_configs(script)
    assert agent_security_problems(configs, role.split()[0]) == []
    nomad = configs["/etc/nomad.d/nomad.hcl"]
    plugins = {label for entry in nomad.get("plugin", []) for label in entry}
    assert ("nomad-device-nvidia" in plugins) == (role == "gpu client")
    if role == "server":
        assert "nomad acl bootstrap -" in script  # operator-chosen token from SSM, once
        assert "initial_management" in script
        assert "provider=aws" in str(_first(_first(nomad["server"])["server_join"])["retry_join"])
    else:
        assert _first(nomad["client"])["node_pool"] == "x"  # the module's node_pool, interpolated


def test_example_root_outputs_addresses_and_gateway_url() -> None:
    doc = module_docs(EXAMPLE)
    outputs = dict(blocks(doc, "output"))
    assert {"nomad_addr", "consul_addr", "gateway_url"} <= set(outputs)
    modules = {label for label, _b in blocks(doc, "module")}
    assert {"network", "queues", "payloads", "iam", "servers", "gpu_pool", "system_pool", "redis"} <= modules
    tfvars = load_hcl(EXAMPLE / "terraform.tfvars.example")
    variables = dict(blocks(doc, "variable"))
    assert set(tfvars) <= set(variables), f"unknown variables in tfvars example: {set(tfvars) - set(variables)}"
    assert not any(w in str(tfvars.get("operator_cidrs")) for w in WORLD)


# --- tests: each check catches what it is for --------------------------------------------------
BAD_TF = """
variable "untyped" {
  description = "no type"
}

variable "undescribed" {
  type = string
}

variable "anywhere" {
  description = "defaults to the world"
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

resource "aws_vpc_security_group_ingress_rule" "nomad" {
  security_group_id = "sg-1"
  ip_protocol       = "tcp"
  from_port         = 4646
  to_port           = 4646
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  for_each          = toset(var.anywhere)
  security_group_id = "sg-1"
  ip_protocol       = "tcp"
  from_port         = 6379
  to_port           = 6379
  cidr_ipv4         = each.value
}

resource "aws_security_group" "legacy" {
  name = "legacy"
  ingress {
    from_port   = 8500
    to_port     = 8500
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_s3_bucket" "b" {
  bucket = "b"
}

resource "aws_elasticache_replication_group" "r" {
  replication_group_id       = "r"
  description                = "r"
  at_rest_encryption_enabled = false
  transit_encryption_enabled = false
  auth_token                 = "hunter2hunter2hunter2"
}

resource "aws_launch_template" "lt" {
  block_device_mappings {
    device_name = "/dev/sda1"
    ebs {
      encrypted = false
    }
  }
  metadata_options {
    http_tokens = "optional"
  }
}

resource "aws_sqs_queue" "q" {
  name = "q"
}

resource "aws_kms_key" "k" {
  description = "k"
}

data "aws_iam_policy_document" "wide" {
  statement {
    actions   = ["sqs:*"]
    resources = ["*"]
  }
}
"""


@pytest.fixture(scope="module")
def bad_doc() -> dict[str, Any]:
    return load_text(BAD_TF)


def test_variable_check_catches_missing_type_and_description(bad_doc: dict[str, Any]) -> None:
    problems = variable_problems(bad_doc, "bad")
    assert "bad: variable 'untyped' has no type" in problems
    assert "bad: variable 'undescribed' has no description" in problems


def test_open_port_check_catches_literal_variable_and_legacy_world_rules(bad_doc: dict[str, Any]) -> None:
    problems = " ".join(open_port_problems(bad_doc, "bad"))
    assert "ingress_rule.nomad" in problems
    assert "ingress_rule.redis" in problems
    assert "aws_security_group.legacy" in problems


def test_open_port_check_accepts_world_on_http_and_validated_operator_ranges() -> None:
    ok = load_text(
        """
variable "ops" {
  description = "operator ranges"
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.ops : c != "0.0.0.0/0"])
    error_message = "never the world"
  }
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  security_group_id = "sg-1"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "nomad" {
  for_each          = toset(var.ops)
  security_group_id = "sg-1"
  ip_protocol       = "tcp"
  from_port         = 4646
  to_port           = 4646
  cidr_ipv4         = each.value
}
"""
    )
    assert open_port_problems(ok, "ok") == []


def test_encryption_check_catches_every_unencrypted_resource(bad_doc: dict[str, Any]) -> None:
    problems = encryption_problems(bad_doc, "bad")
    for expected in (
        "S3 bucket without server-side encryption",
        "S3 bucket without a full public access block",
        "S3 bucket without lifecycle expiry",
        "ElastiCache without encryption at rest",
        "ElastiCache without encryption in transit",
        "ElastiCache without a generated auth token",
        "launch template EBS volume not encrypted",
        "launch template allows IMDSv1",
        "SQS queue without server-side encryption",
        "KMS key without rotation",
    ):
        assert f"bad: {expected}" in problems


def test_secret_checks_catch_literals_and_secret_shaped_text(bad_doc: dict[str, Any]) -> None:
    assert any("auth_token is a string literal" in p for p in secret_literal_problems(bad_doc, "bad"))
    assert secret_text_problems('token = "0f2d6c1e-5b7a-4c3e-9d8f-1a2b3c4d5e6f"', "x")
    assert secret_text_problems("aws_access_key_id = AKIAABCDEFGHIJKLMNOP", "x")
    assert secret_text_problems("-----BEGIN RSA PRIVATE KEY-----", "x")


def test_iam_check_catches_wildcards(bad_doc: dict[str, Any]) -> None:
    problems = " ".join(iam_problems(bad_doc, "bad"))
    assert "wildcard actions" in problems and "Resource '*'" in problems


def test_agent_check_catches_plaintext_agents() -> None:
    script = (
        "cat > /etc/nomad.d/nomad.hcl <<CONF\nserver {\n  enabled = true\n}\nCONF\n"
        'cat > /etc/consul.d/consul.hcl <<CONF\nserver = true\nretry_join = ["10.0.0.1"]\nCONF\n'
    )
    problems = " ".join(agent_security_problems(embedded_configs(script), "server"))
    for expected in (
        "Nomad TLS",
        "Nomad ACLs",
        "Nomad gossip",
        "Consul gossip",
        "Consul TLS",
        "default-deny",
        "auto-join",
    ):
        assert expected in problems


def test_layout_check_catches_a_module_without_outputs_or_readme(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("")
    (tmp_path / "variables.tf").write_text("")
    (tmp_path / "outputs.tf").write_text("")
    problems = module_layout_problems(tmp_path)
    assert f"{tmp_path.name}: missing README.md" in problems
    assert f"{tmp_path.name}: outputs.tf declares no output" in problems


# --- the terraform binary ----------------------------------------------------------------------
def _terraform() -> str:
    binary = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").exists() else None
    )
    if binary is None:
        pytest.fail("the `terraform` binary is required for this test and was not found on PATH")
    return binary


def _run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300, check=False)


def test_terraform_fmt_check_passes() -> None:
    result = _run([_terraform(), "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)], ROOT)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


def test_terraform_fmt_check_catches_misformatted_files(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n}\n')
    result = _run([_terraform(), "fmt", "-check", "-recursive", str(tmp_path)], tmp_path)
    assert result.returncode != 0


PLUGIN_DIR = Path(os.environ.get("SKIFF_TF_PLUGIN_DIR", "/opt/tf-plugins"))


@pytest.mark.parametrize("relative", ["examples/aws", *(f"modules/{m.name}" for m in MODULES)])
def test_terraform_validate(relative: str, tmp_path: Path) -> None:
    """`terraform validate` needs the AWS provider. It is taken from a local mirror
    (SKIFF_TF_PLUGIN_DIR, default /opt/tf-plugins) or downloaded; with neither (offline, no mirror)
    the test is an expected failure that says so, the one exemption the issue grants."""
    tree = tmp_path / "terraform"
    shutil.copytree(TF_ROOT, tree, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl"))
    workdir = tree / relative
    init = [_terraform(), "init", "-backend=false", "-input=false", "-no-color"]
    if PLUGIN_DIR.is_dir():
        init.append(f"-plugin-dir={PLUGIN_DIR}")
    result = _run(init, workdir)
    if result.returncode != 0:
        pytest.xfail(
            "terraform validate not run: the hashicorp/aws provider is unavailable offline "
            f"(no mirror at {PLUGIN_DIR} and no registry access): {result.stderr.strip()[-300:]}"
        )
    result = _run([_terraform(), "validate", "-no-color"], workdir)
    assert result.returncode == 0, f"terraform validate failed in {relative}:\n{result.stdout}{result.stderr}"
