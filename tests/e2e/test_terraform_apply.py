"""`terraform apply` of the example root and of every module, against a local AWS API.

For each root: copy terraform/ to a temporary directory, add a provider override that points every
AWS service the configuration uses at a moto server on 127.0.0.1 (tests/support/moto_aws.py, moto
plus the few APIs it lacks), then `init -plugin-dir`, `plan -out`, `apply` of that plan, a second
`plan -detailed-exitcode` that must report no changes, `destroy`, and an empty `state list`.

What this proves: every root plans (for_each/count keys known at plan time), the provider can
create, read back and delete every resource in dependency order, and nothing shows a perpetual
diff. What it cannot: moto evaluates neither IAM nor KMS policies, launches no real instance
(the boot scripts never run), and knows no quotas or instance-type availability.

The roots run concurrently (most of their time is the provider's waiters: load balancers turning
active, S3's consistency polls), one moto server for this module, each root under its own name
prefix so they never collide. SKIFF_TF_APPLY_JOBS caps how many run at once.

Needs terraform (PATH or /usr/local/bin) and the hashicorp/aws provider in a local mirror
(SKIFF_TF_PLUGIN_DIR, default /opt/tf-plugins); without them the tests fail and say which is missing.
Every service the configuration uses has its endpoint on 127.0.0.1; one missing from SERVICES
would go to AWS's own endpoint with fake credentials and fail.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.moto_aws import moto_aws_server

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "terraform"
FIXTURES = ROOT / "tests" / "data" / "terraform"
PLUGIN_DIR = Path(os.environ.get("SKIFF_TF_PLUGIN_DIR", "/opt/tf-plugins"))
JOBS = int(os.environ.get("SKIFF_TF_APPLY_JOBS", "0")) or None  # None: all roots at once
REGION = "us-east-1"

# Every service the configuration talks to (acm only in the gateway-lb fixture) plus the ones that
# appear only in ARNs: all of them point at moto, so none can ever reach AWS.
SERVICES = [
    "acm",
    "autoscaling",
    "cloudwatch",
    "ec2",
    "elasticache",
    "elb",
    "elbv2",
    "iam",
    "kms",
    "logs",
    "s3",
    "secretsmanager",
    "sqs",
    "ssm",
    "sts",
]

# Per command, in seconds. An apply of the example root takes about 1.5 min on 2 cores; the bound
# is there so that a hung call fails the test instead of the CI job.
TIMEOUTS = {"init": 180, "plan": 300, "apply": 900, "destroy": 900, "state": 60}


@dataclass(frozen=True)
class Root:
    """A root module to apply: the example, or a fixture under tests/data/terraform/<module>."""

    relative: str  # inside the copied terraform/ tree
    fixture: str | None = None  # tests/data/terraform/<fixture>, copied to terraform/fixtures/<fixture>
    tfvars: dict[str, object] = field(default_factory=dict)
    must_create: tuple[str, ...] = ()  # addresses that must be in the state after apply


ROOTS = {
    "examples/aws": Root(
        "examples/aws",
        tfvars={
            "name": "ci-example",
            "operator_cidrs": ["10.8.0.0/16"],
            "gpu_use_spot": True,
            "ecr_repository_arns": ["arn:aws:ecr:us-east-1:123456789012:repository/ci-example/*"],
            "tags": {"team": "ci"},
        },
        must_create=(
            'module.redis.aws_vpc_security_group_ingress_rule.clients["system"]',
            "module.redis.aws_elasticache_replication_group.this",
            "module.gpu_pool.aws_autoscaling_group.this",
            "module.iam.aws_kms_key.cluster",
        ),
    ),
    **{
        f"modules/{name}": Root(f"fixtures/{name}", fixture=name)
        for name in ("network", "iam", "queues", "payloads", "nomad-servers", "gpu-clients")
    },
    "modules/redis": Root(
        "fixtures/redis",
        fixture="redis",
        must_create=('module.redis.aws_vpc_security_group_ingress_rule.clients["client"]',),
    ),
    "modules/gateway-lb": Root(
        "fixtures/gateway-lb",
        fixture="gateway-lb",
        must_create=(
            "module.public.aws_lb_listener.https[0]",
            'module.public.aws_vpc_security_group_ingress_rule.https["0.0.0.0/0"]',
        ),
    ),
}


def test_every_module_has_a_root() -> None:
    """A new module must get a fixture root here (and the fixtures must not outlive their module)."""
    modules = {p.name for p in (TF_ROOT / "modules").iterdir() if p.is_dir()}
    assert {r.removeprefix("modules/") for r in ROOTS if r.startswith("modules/")} == modules
    assert {p.name for p in FIXTURES.iterdir() if p.is_dir()} == modules


# --- tools ------------------------------------------------------------------------------------
def _terraform() -> str:
    binary = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if Path("/usr/local/bin/terraform").exists() else None
    )
    if binary is None:
        pytest.fail("terraform is not on PATH (nor at /usr/local/bin/terraform): install terraform >= 1.6")
    return binary


def _check_provider_mirror() -> None:
    """The provider in either layout -plugin-dir reads, under the registry's host directory:
    unpacked (<host>/hashicorp/aws/<version>/<os>_<arch>/terraform-provider-aws_*) or packed
    (<host>/hashicorp/aws/terraform-provider-aws_<version>_<os>_<arch>.zip, what
    `terraform providers mirror` writes)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    plat = f"{platform.system().lower()}_{arch}"
    found = [
        *PLUGIN_DIR.glob(f"*/hashicorp/aws/*/{plat}/terraform-provider-aws_*"),
        *PLUGIN_DIR.glob(f"*/hashicorp/aws/terraform-provider-aws_*_{plat}.zip"),
    ]
    if not found:
        pytest.fail(
            f"the hashicorp/aws provider for {plat} is not in the local mirror {PLUGIN_DIR} (looked for "
            f"<host>/hashicorp/aws/<version>/{plat}/terraform-provider-aws_* and "
            f"<host>/hashicorp/aws/terraform-provider-aws_<version>_{plat}.zip under it); "
            "set SKIFF_TF_PLUGIN_DIR to a directory that has it (`terraform providers mirror DIR` makes one)"
        )


def _override(moto_url: str) -> str:
    endpoints = "\n".join(f'    {s:<14} = "{moto_url}"' for s in SERVICES)
    return f"""# Written by tests/e2e/test_terraform_apply.py: local state, every endpoint on the local moto.
terraform {{
  backend "local" {{}}
}}

provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  # moto answers an action it lacks with HTTP 500, which the SDK would retry for ~25 minutes.
  max_retries = 3

  endpoints {{
{endpoints}
  }}
}}
"""


def _self_signed_certificate() -> tuple[str, str]:
    """A throwaway certificate for the gateway-lb fixture's aws_acm_certificate (moto checks it
    parses and that the load balancer's certificate exists, as AWS does)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.skiff.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("gateway.skiff.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


# --- one root's cycle -------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    args: list[str]
    rc: int
    seconds: float
    output: str


@dataclass
class Cycle:
    root: str
    workdir: Path
    steps: list[Step] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # state list after apply
    error: str | None = None  # an exception in the harness itself

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def timings(self) -> str:
        return ", ".join(f"{s.name} {s.seconds:.1f}s" for s in self.steps)


def _env(tmp: Path) -> dict[str, str]:
    cli_config = tmp / "terraformrc"
    cli_config.write_text("")  # no user CLI config: no credentials helpers, no network mirrors
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_")) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        {
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": "127.0.0.1",
        }
    )
    return env


def _run_cycle(root_id: str, root: Root, tmp: Path, moto_url: str, certificate: tuple[str, str]) -> Cycle:
    tree = tmp / "terraform"
    shutil.copytree(TF_ROOT, tree, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"))
    if root.fixture:
        shutil.copytree(FIXTURES / root.fixture, tree / root.relative)
        shutil.copy(FIXTURES / "base.tf", tree / root.relative / "base.tf")
    workdir = tree / root.relative
    (workdir / "skiff_moto_override.tf").write_text(_override(moto_url))
    tfvars = dict(root.tfvars)
    if root.fixture == "gateway-lb":
        tfvars["certificate_pem"], tfvars["private_key_pem"] = certificate
    if tfvars:
        (workdir / "ci.auto.tfvars.json").write_text(json.dumps(tfvars, indent=2))

    cycle = Cycle(root_id, workdir)
    env = _env(tmp)
    terraform = _terraform()
    # -parallelism: the provider's waiters dominate and the roots already run side by side.
    common = ["-no-color", "-input=false"]
    plan_parallel = "-parallelism=10"
    sequence: list[tuple[str, list[str], set[int]]] = [
        ("init", ["init", *common, f"-plugin-dir={PLUGIN_DIR}"], {0}),
        ("plan", ["plan", *common, plan_parallel, "-out=tfplan"], {0}),
        ("apply", ["apply", *common, plan_parallel, "-auto-approve", "tfplan"], {0}),
        ("state-after-apply", ["state", "list"], {0}),
        ("replan", ["plan", *common, plan_parallel, "-detailed-exitcode"], {0}),
    ]

    def run(name: str, args: list[str]) -> Step:
        kind = name.split("-")[0] if name.startswith("state") else ("plan" if name == "replan" else name)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [terraform, *args],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUTS[kind],
                check=False,
            )
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            rc, output = -1, (out.decode() if isinstance(out, bytes) else out) + f"\n[timed out after {exc.timeout}s]"
        step = Step(name, args, rc, time.monotonic() - started, output)
        cycle.steps.append(step)
        return step

    try:
        applied = False
        for name, args, ok in sequence:
            step = run(name, args)
            if name == "apply":
                applied = True  # even a failed apply may have created something
            if step.rc not in ok:
                break  # the test reports it from the steps
            if name == "state-after-apply":
                cycle.applied = step.output.split()
        if applied:
            # Destroy even after a failure: it is part of what is checked, and it is how a failed
            # root reports what it would leave behind.
            run("destroy", ["destroy", *common, plan_parallel, "-auto-approve"])
            run("state-after-destroy", ["state", "list"])
    except Exception as exc:  # reported by the test, never lost in the thread
        cycle.error = f"{type(exc).__name__}: {exc}"
    return cycle


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("moto")


@pytest.fixture(scope="module")
def moto_url(moto_dir: Path) -> Iterator[str]:
    _terraform()
    _check_provider_mirror()
    with moto_aws_server(moto_dir) as url:
        yield url


class Cycles:
    """The cycle of each root, run in a thread pool; get() starts a root not started yet."""

    def __init__(self, moto_url: str, tmp_path_factory: pytest.TempPathFactory, workers: int) -> None:
        self.moto_url = moto_url
        self.tmp_path_factory = tmp_path_factory
        self.certificate = _self_signed_certificate()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="terraform")
        self.futures: dict[str, Future[Cycle]] = {}

    def start(self, root_id: str) -> None:
        if root_id not in self.futures:
            tmp = self.tmp_path_factory.mktemp(root_id.replace("/", "-"))
            self.futures[root_id] = self.pool.submit(
                _run_cycle, root_id, ROOTS[root_id], tmp, self.moto_url, self.certificate
            )

    def get(self, root_id: str, timeout: float) -> Cycle:
        self.start(root_id)
        return self.futures[root_id].result(timeout=timeout)


@pytest.fixture(scope="module")
def cycles(request: pytest.FixtureRequest, moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cycles]:
    """Start the cycles of every root selected in this session at once, in threads (each cycle is
    a chain of terraform processes); each test then waits for its own root's result. Under
    pytest-xdist (a worker runs only some of the tests, and xdist runs workers side by side) each
    root starts only when its test asks for it."""
    under_xdist = hasattr(request.config, "workerinput")
    module = request.module.__name__
    wanted = [
        item.callspec.params["root"]
        for item in request.session.items
        if not under_xdist
        and item.module is not None
        and item.module.__name__ == module
        and hasattr(item, "callspec")
        and "root" in item.callspec.params
    ]
    runner = Cycles(moto_url, tmp_path_factory, workers=JOBS or max(len(set(wanted)), 1))
    for root_id in dict.fromkeys(wanted):
        runner.start(root_id)
    yield runner
    runner.pool.shutdown(wait=True, cancel_futures=True)


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _diff_summary(plan_output: str) -> str:
    """The resource lines of a plan (what would change), for a readable failure."""
    keep = [
        line
        for line in plan_output.splitlines()
        if line.lstrip().startswith("#") or "Plan:" in line or line.strip().startswith(("~", "+", "-", "-/+"))
    ]
    return "\n".join(keep[:120])


# --- the test ---------------------------------------------------------------------------------
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("root", sorted(ROOTS))
def test_plan_apply_replan_destroy(root: str, cycles: Cycles, moto_dir: Path) -> None:
    cycle = cycles.get(root, timeout=1700)
    print(f"\n{root}: {cycle.timings()}")
    # moto answers an action it lacks with HTTP 500 and the reason in its log.
    moto_log = f"\n(moto's log, every root's requests: {moto_dir / 'moto.log'})"

    if cycle.error:
        pytest.fail(f"{root}: the harness failed after {cycle.timings() or 'no step'}: {cycle.error}")
    failed = next((s for s in cycle.steps if s.name != "replan" and s.rc != 0), None)
    if failed is not None and failed.name != "destroy" and failed.name != "state-after-destroy":
        destroy = cycle.step("destroy")
        leftover = cycle.step("state-after-destroy")
        pytest.fail(
            f"{root}: terraform {' '.join(failed.args)} exited {failed.rc} after {failed.seconds:.0f}s:\n"
            f"{_tail(failed.output)}\n"
            + (f"\n(destroy afterwards exited {destroy.rc})" if destroy else "")
            + (f"; left in state: {leftover.output.split()}" if leftover and leftover.output.strip() else "")
            + moto_log
        )

    assert cycle.applied, f"{root}: apply created nothing"
    missing = [a for a in ROOTS[root].must_create if a not in cycle.applied]
    assert not missing, f"{root}: not in the state after apply: {missing}"

    replan = cycle.step("replan")
    assert replan is not None, f"{root}: no second plan ran"
    assert replan.rc in (0, 2), f"{root}: the second plan failed (exit {replan.rc}):\n{_tail(replan.output)}{moto_log}"
    assert replan.rc == 0, (
        f"{root}: the plan right after apply is not empty: something the provider reads back differs "
        f"from what it wrote\n{_diff_summary(replan.output)}"
    )

    destroy = cycle.step("destroy")
    assert destroy is not None and destroy.rc == 0, (
        f"{root}: destroy exited {destroy.rc if destroy else None}:\n{_tail(destroy.output if destroy else '')}"
        + moto_log
    )
    leftover = cycle.step("state-after-destroy")
    assert leftover is not None and leftover.rc == 0, f"{root}: state list failed after destroy"
    assert leftover.output.split() == [], f"{root}: still in state after destroy: {leftover.output.split()}"
