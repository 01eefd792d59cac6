"""Endpoint files: the examples load, python-hcl2's quirks are normalised, and every bad file
yields its problems with file, line, field and message, collected across all files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skiff_core.endpoints import EndpointFileError, Problem, endpoint_files, load_endpoint_file, load_endpoints
from skiff_core.spec import EndpointType, ScalerType

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "endpoints"
BAD = REPO / "tests" / "data" / "bad_endpoints"

# Every fixture file -> the exact problems it yields on its own (as `line: field: message`).
EXPECTED: dict[str, list[str]] = {
    "syntax_error.hcl": [
        '4: syntax error: unexpected `}` (column 12); expected `"` or `[` or `{` or a name or a number'
    ],
    "unclosed_block.hcl": ['6: syntax error: unexpected end of file (an unclosed `{`, `[` or `"`?)'],
    "unknown_field.hcl": [
        "5: scaling.max_worker: unknown field; did you mean `max_workers`? expected one of: "
        "min_workers, max_workers, idle_timeout, scaler, target, max_surge, prewarm",
        "8: gpus: unknown field; did you mean `gpu`? expected one of: type, image, command, gpu, "
        "resources, scaling, execution_timeout, job_ttl, max_retries, env, concurrency, datacenters, secrets, volume, "
        "health_path, rate_limits",
    ],
    "bad_rate_limits.hcl": [
        "5: rate_limits.runn: unknown block; did you mean `run`? expected one of: run, runsync, status, "
        "stream, cancel, purge_queue, openai",
        "10: rate_limits.cancel.requests: must be >= 0 (got -1)",
        '11: rate_limits.cancel.concurrent: must be a whole number (got "many")',
        "14: rate_limits.status: is a block, not an argument: write `status { ... }`",
    ],
    "wrong_type.hcl": [
        '2: command: must be a list such as ["a", "b"] (got "python worker.py")',
        '5: scaling.max_workers: must be a whole number (got "many")',
        "6: scaling.target: must be a number (got true)",
        "9: max_retries: must be a whole number (got true)",
        "10: env.DEBUG: must be a quoted string (got 1)",
    ],
    "unknown_block.hcl": [
        '1: service: unknown block type; expected `endpoint "name" { ... }`',
        "8: autoscale: unknown block; expected one of: gpu, resources, scaling, volume, rate_limits",
        '13: region: only `endpoint "name" { ... }` blocks may appear at the top level of a file',
    ],
    "bad_duration.hcl": [
        '5: scaling.idle_timeout: expected a duration such as "5s", "10m" or "24h", got \'5 minutes\'',
        '8: execution_timeout: must be a positive duration such as "600s" (got 0 seconds)',
        '9: job_ttl: expected a duration such as "5s", "10m" or "24h", got [\'24h\']',
    ],
    "min_over_max.hcl": ["4: scaling: min_workers (4) must not exceed max_workers (2)"],
    "zero_workers.hcl": ["7: scaling.max_workers: must be >= 1 (got 0)"],
    "not_runnable.hcl": [
        '1: endpoint "nothing-to-run": an endpoint needs `image` (cluster) or `command` (embedded / raw_exec), or both',
        '6: command: command must name a program to run, e.g. ["python", "-u", "worker.py"]',
    ],
    "bad_name.hcl": [
        "1: name: endpoint names are 1-63 lowercase letters, digits and dashes, starting and ending "
        "with a letter or digit (got 'Echo_1')",
        '5: endpoint: takes exactly one label, its name: `endpoint "echo" { ... }`',
    ],
    "bad_enum.hcl": [
        "2: type: must be 'queue' or 'load_balancer' (got \"batch\")",
        "6: scaling.scaler: must be 'queue_delay' or 'request_count' (got \"cpu\")",
    ],
    "one_line.hcl": [
        "4: scaling: a block written on one line may hold only one argument (Terraform and Nomad "
        "reject more); put each argument on its own line",
        "5: max_retries: starts on the same line as `image`; put each argument on its own line",
    ],
    "expressions.hcl": [
        "2: image: expressions are not supported here (got `var.image`); write a literal value, "
        'e.g. a quoted string "..." or a number',
        '3: command: templates are not supported (got "${path.module}/worker.py"); write the value '
        "out, or escape a literal `${` as `$${`",
        "4: max_retries: expressions are not supported here (got `1 + 2`); write a literal value, "
        'e.g. a quoted string "..." or a number',
    ],
    "repeated.hcl": [
        "3: command: set more than once (first on line 2)",
        "9: scaling: set more than once (first on line 5)",
    ],
    # Each half of a cross-file duplicate is fine on its own.
    "duplicate_a.hcl": [],
    "duplicate_b.hcl": [],
}
DUPLICATE = f'{BAD}/duplicate_b.hcl:2: endpoint "twin": declared more than once (first in {BAD}/duplicate_a.hcl:1)'


def _problems_of(path: Path) -> list[str]:
    try:
        load_endpoint_file(path)
    except EndpointFileError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_examples_load_with_the_documented_values() -> None:
    specs = load_endpoints(EXAMPLES)
    assert sorted(specs) == ["echo", "lb-hello", "runpod-echo", "stream"]

    echo = specs["echo"]
    assert echo.type is EndpointType.QUEUE
    assert echo.image == "ghcr.io/skiff-dev/echo-worker:0.1"
    assert echo.command == ["python", "-u", "examples/workers/echo.py"]
    assert echo.gpu is None
    assert (echo.scaling.min_workers, echo.scaling.max_workers) == (0, 3)
    assert echo.scaling.idle_timeout == 5.0
    assert (echo.scaling.scaler, echo.scaling.target) == (ScalerType.QUEUE_DELAY, 4)
    assert (echo.execution_timeout, echo.job_ttl) == (600.0, 86400.0)

    stream = specs["stream"]
    assert stream.command == ["python", "-u", "examples/workers/stream.py"]
    assert stream.scaling.scaler is ScalerType.REQUEST_COUNT
    assert stream.env == {"STREAM_DEFAULT_CHUNKS": "5"}

    runpod_echo = specs["runpod-echo"]
    assert runpod_echo.command == ["python", "-u", "examples/workers/runpod_echo.py"]
    assert runpod_echo.gpu is not None and runpod_echo.gpu.count == 1
    assert runpod_echo.gpu.models == ["NVIDIA L4", "NVIDIA A10G"]

    lb = specs["lb-hello"]
    assert lb.type is EndpointType.LOAD_BALANCER
    assert lb.health_path == "/ping"
    assert (lb.scaling.max_workers, lb.scaling.idle_timeout) == (2, 30.0)


def test_example_commands_name_worker_files_that_exist() -> None:
    # Commands run from the repository root (where `skiff up` starts).
    for spec in load_endpoints(EXAMPLES).values():
        assert spec.command is not None
        script = REPO / spec.command[-1]
        assert script.is_file(), f"{spec.name}: {script} is missing"
    assert "import runpod\n" in (REPO / "examples/workers/runpod_echo.py").read_text()
    assert "import skiff.serverless\n" in (REPO / "examples/workers/echo.py").read_text()


def _run_example(endpoint: str, job_input: Any) -> subprocess.CompletedProcess[str]:
    """Run an example endpoint's own command in the SDK's local test mode (no gateway)."""
    command = load_endpoints(EXAMPLES)[endpoint].command
    assert command is not None and command[0] == "python"
    argv = [sys.executable, *command[1:], "--test_input", json.dumps({"input": job_input})]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("endpoint", ["echo", "runpod-echo"])
def test_echo_workers_return_their_input_and_fail_on_request(endpoint: str) -> None:
    done = _run_example(endpoint, {"greeting": "hello-from-test", "sleep": 0.01})
    assert done.returncode == 0, done.stderr + done.stdout
    result = [line for line in (done.stdout + done.stderr).splitlines() if "Job result" in line]
    assert len(result) == 1 and "hello-from-test" in result[0]

    failed = _run_example(endpoint, {"fail": "boom-on-request"})
    assert failed.returncode == 1
    assert "boom-on-request" in failed.stdout + failed.stderr


def test_stream_worker_yields_chunks_and_aggregates_them() -> None:
    done = _run_example("stream", {"text": "alpha beta gamma"})
    assert done.returncode == 0, done.stderr + done.stdout
    result = [line for line in (done.stdout + done.stderr).splitlines() if "Job result" in line]
    # The aggregate output is the list of chunks (printed as JSON by Skiff's SDK, repr by runpod's).
    assert len(result) == 1
    assert result[0].replace("'", '"').endswith('{"output": ["alpha", "beta", "gamma"]}')


def test_every_fixture_file_is_covered() -> None:
    assert sorted(p.name for p in endpoint_files(BAD)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_yields_its_problems(name: str) -> None:
    path = BAD / name
    assert _problems_of(path) == [f"{path}:{line}" for line in EXPECTED[name]]


def test_problem_carries_file_line_field_and_message() -> None:
    path = BAD / "zero_workers.hcl"
    with pytest.raises(EndpointFileError) as caught:
        load_endpoint_file(path)
    assert caught.value.problems == [Problem(str(path), 7, "scaling.max_workers", "must be >= 1 (got 0)")]
    assert str(caught.value) == f"{path}:7: scaling.max_workers: must be >= 1 (got 0)"


def test_directory_collects_problems_of_all_files_and_cross_file_duplicates() -> None:
    with pytest.raises(EndpointFileError) as caught:
        load_endpoints(BAD)
    got = [str(p) for p in caught.value.problems]
    expected = [f"{BAD / name}:{line}" for name in sorted(EXPECTED) for line in EXPECTED[name]]
    assert got == [*expected, DUPLICATE]
    assert str(caught.value).splitlines() == got


def test_duplicate_within_one_file(tmp_path: Path) -> None:
    path = tmp_path / "two.hcl"
    path.write_text('endpoint "same" {\n  image = "a:1"\n}\n\nendpoint "same" {\n  image = "b:1"\n}\n')
    assert _problems_of(path) == [f'{path}:5: endpoint "same": declared more than once (first in {path}:1)']


def test_a_file_declares_several_endpoints_and_hcl2_quirks_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "several.hcl"
    path.write_text(
        """# comments anywhere
endpoint "one" { command = ["python"] }

endpoint two {
  // a heredoc followed by another argument
  image = <<EOT
ghcr.io/acme/two:1
EOT
  command = ["python", "-u", "w.py"] # trailing comment
  type    = "load_balancer"
  env = {
    LITERAL = "$${NOT_A_TEMPLATE}"
    "QUOTED_KEY" = "say \\"hi\\"\\tnow"
  }
  gpu {
    count  = 2
    models = ["NVIDIA H100 80GB HBM3"]
  }
  scaling {
    target       = 1e1
    idle_timeout = 90
  }
  health_path = "/health"
}
"""
    )
    one, two = load_endpoint_file(path)
    assert one.name == "one" and one.command == ["python"]
    assert two.name == "two"
    assert two.type is EndpointType.LOAD_BALANCER
    assert two.image == "ghcr.io/acme/two:1"
    assert two.command == ["python", "-u", "w.py"]
    assert two.env == {"LITERAL": "${NOT_A_TEMPLATE}", "QUOTED_KEY": 'say "hi"\tnow'}
    assert two.gpu is not None and (two.gpu.count, two.gpu.models) == (2, ["NVIDIA H100 80GB HBM3"])
    assert (two.scaling.target, two.scaling.idle_timeout) == (10.0, 90.0)
    assert two.health_path == "/health"


def test_not_utf8_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty.hcl").write_text("")
    (tmp_path / "binary.hcl").write_bytes(b'endpoint "x" {\n  image = "\xff"\n}\n')
    with pytest.raises(EndpointFileError) as caught:
        load_endpoints(tmp_path)
    assert [str(p) for p in caught.value.problems] == [f"{tmp_path}/binary.hcl: not UTF-8 text (byte 26)"]
    assert load_endpoint_file(tmp_path / "empty.hcl") == []


def test_directory_order_skips_hidden_files_and_misses_are_problems(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "echo.hcl", tmp_path / "b.hcl")
    shutil.copy(EXAMPLES / "stream.hcl", tmp_path / "a.hcl")
    (tmp_path / ".#b.hcl").write_text("not hcl {")  # an editor's lock file
    (tmp_path / "notes.txt").write_text("not an endpoint file")
    assert [p.name for p in endpoint_files(tmp_path)] == ["a.hcl", "b.hcl"]
    assert list(load_endpoints(tmp_path)) == ["stream", "echo"]

    missing = tmp_path / "nope"
    with pytest.raises(EndpointFileError) as caught:
        load_endpoints(missing)
    assert str(caught.value) == f"{missing}: no such directory"


@pytest.mark.parametrize("name", ["gateway", "controller", "redis", "elasticmq"])
def test_names_of_skiffs_own_jobs_are_reserved(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.hcl"
    path.write_text(f'endpoint "{name}" {{\n  image = "a:1"\n}}\n')
    with pytest.raises(EndpointFileError) as caught:
        load_endpoint_file(path)
    assert len(caught.value.problems) == 1
    assert f"endpoint name {name!r} is reserved" in str(caught.value)
    assert f"skiff-{name}" in str(caught.value)
