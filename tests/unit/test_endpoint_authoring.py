"""What an endpoint file says about a worker beyond its code: concurrency, volumes, secrets, GPU
preference, datacenters. Parsed from HCL as users write it, with file:line problems."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from skiff_core.endpoints import EndpointFileError, load_endpoint_file
from skiff_core.spec import EndpointSpec

SKIFF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "skiff"
HEAD = 'endpoint "w" {\n  command = ["python", "w.py"]\n'


def _load(tmp_path: Path, body: str, head: str = HEAD) -> EndpointSpec:
    path = tmp_path / "w.hcl"
    path.write_text(head + body + "}\n")
    (spec,) = load_endpoint_file(path)
    return spec


def _problems(tmp_path: Path, body: str, head: str = HEAD) -> list[str]:
    path = tmp_path / "w.hcl"
    path.write_text(head + body + "}\n")
    with pytest.raises(EndpointFileError) as caught:
        load_endpoint_file(path)
    return [f"{p.line}: {p.field}: {p.message}" for p in caught.value.problems]


def test_concurrency(tmp_path: Path) -> None:
    assert _load(tmp_path, "  concurrency = 2\n").concurrency == 2
    assert _load(tmp_path, "").concurrency is None
    assert _problems(tmp_path, "  concurrency = 0\n") == ["3: concurrency: must be >= 1 (got 0)"]
    lb = 'endpoint "w" {\n  type = "load_balancer"\n  command = ["python", "w.py"]\n'
    (problem,) = _problems(tmp_path, "  concurrency = 2\n", head=lb)
    assert "load_balancer" in problem and "concurrency" in problem


def test_fields_added_later_leave_the_spec_hash_alone_until_set(tmp_path: Path) -> None:
    # An upgrade of Skiff must not roll every worker: a spec that does not use the new fields
    # hashes as before (tests/golden pins the examples' hashes from before these fields).
    plain = _load(tmp_path, "")
    assert plain.spec_hash() == EndpointSpec(name="w", command=["python", "w.py"]).spec_hash()
    assert _load(tmp_path, "  concurrency = 2\n").spec_hash() != plain.spec_hash()


def test_rate_limits_never_replace_a_worker(tmp_path: Path) -> None:
    # Only the gateway reads them: a new limit is no reason to roll an endpoint's workers.
    plain = _load(tmp_path, "")
    limited = _load(tmp_path, "  rate_limits {\n    run {\n      requests = 5\n    }\n  }\n")
    assert limited.rate_limits is not None and limited.spec_hash() == plain.spec_hash()


def test_volume_blocks(tmp_path: Path) -> None:
    body = (
        '\n  volume "models" {\n    source = "model-cache"\n  }\n\n'
        '  volume "data" {\n    source    = "datasets"\n    path      = "/data"\n    read_only = true\n  }\n'
    )
    spec = _load(tmp_path, body)
    assert list(spec.volume) == ["models", "data"]
    assert spec.volume["models"].source == "model-cache"
    assert spec.volume["models"].path == "/runpod-volume"  # Runpod's network volume path
    assert spec.volume["data"].read_only is True


def test_volume_problems_have_lines(tmp_path: Path) -> None:
    body = (
        '  volume "a" {\n    source = "x"\n  }\n'  # lines 3-5
        '  volume "a" {\n    source = "y"\n  }\n'  # 6-8
        '  volume "b" {\n    source = "y"\n    path   = "relative"\n  }\n'  # 9-12
        "  volume {\n    source = 1\n  }\n"  # 13-15
        '  volume "c" {\n    sorce = "z"\n  }\n'  # 16-18
    )
    assert _problems(tmp_path, body) == [
        "6: volume.a: declared more than once (first on line 3)",
        "11: volume.b.path: must be an absolute path inside the worker such as \"/runpod-volume\" (got 'relative')",
        '13: volume: takes exactly one label: `volume "label" { ... }`',
        "16: volume.c.source: is required",
        "17: volume.c.sorce: unknown field; did you mean `source`? expected one of: source, type, path, "
        "read_only, local_path",
    ]


def test_two_volumes_on_one_path(tmp_path: Path) -> None:
    body = '  volume "a" {\n    source = "x"\n  }\n  volume "b" {\n    source = "y"\n  }\n'
    assert _problems(tmp_path, body) == ["3: volume: volumes 'a' and 'b' are both mounted at '/runpod-volume'"]


def test_secrets(tmp_path: Path) -> None:
    assert _load(tmp_path, '  secrets = ["HF_TOKEN", "WANDB_API_KEY"]\n').secrets == ["HF_TOKEN", "WANDB_API_KEY"]
    (bad,) = _problems(tmp_path, '  secrets = ["HF-TOKEN"]\n')
    assert bad.startswith("3: secrets: secret names are environment variable names")
    (reserved,) = _problems(tmp_path, '  secrets = ["RUNPOD_AI_API_KEY"]\n')
    assert "set by Skiff" in reserved
    (twice,) = _problems(tmp_path, '  secrets = ["A", "A"]\n')
    assert twice == "3: secrets: listed more than once: A"
    (both,) = _problems(tmp_path, '  secrets = ["A"]\n  env = {\n    A = "x"\n  }\n')
    assert "A is in both `env` and `secrets`" in both


def test_validate_warns_about_a_secret_in_env(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "w.hcl").write_text(
        HEAD + '  env = {\n    MODEL_ID = "tiny"\n    HF_TOKEN = "hf_abcdefghijklmnopqrstuvwx"\n'
        '    LOOKS    = "sk-abcdefghijklmnopqrstuvwx"\n  }\n}\n'
    )
    result = subprocess.run(
        [str(SKIFF), "validate", str(endpoints)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith('warning: endpoint "w": env.HF_TOKEN looks like a secret')
    assert "skiff secrets set w HF_TOKEN" in warnings[0]
    assert "env.LOOKS" in warnings[1] and "MODEL_ID" not in result.stderr


def test_gpu_models_and_datacenters(tmp_path: Path) -> None:
    body = '  datacenters = ["gpu-east"]\n\n  gpu {\n    models = ["NVIDIA H100", "NVIDIA L4"]\n  }\n'
    spec = _load(tmp_path, body)
    assert spec.datacenters == ["gpu-east"] and spec.gpu is not None and spec.gpu.models[0] == "NVIDIA H100"
    (twice,) = _problems(tmp_path, '  gpu {\n    models = ["A", "A"]\n  }\n')
    assert twice.startswith("4: gpu.models: listed more than once: A")
    (empty,) = _problems(tmp_path, "  datacenters = []\n")
    assert empty.startswith("3: datacenters: must name at least one datacenter")
