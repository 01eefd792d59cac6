"""`skiff validate` as a user runs it: the installed console script in a real subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIFF = REPO / ".venv" / "bin" / "skiff"
BAD = Path("tests/data/bad_endpoints")


def _skiff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    if not SKIFF.is_file():
        pytest.fail(f"the `skiff` console script is missing at {SKIFF}: run `pip install -e .[test]`")
    result = subprocess.run([str(SKIFF), "validate", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_examples_validate_with_a_summary_table() -> None:
    result = _skiff()  # the default directory is examples/endpoints, relative to the cwd
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert sorted(rows) == ["echo", "lb-hello", "runpod-echo", "stream"]
    echo = [cell.strip() for cell in rows["echo"].split("│")[1:-1]]
    assert echo == ["echo", "queue", "0-3", "queue_delay > 4s", "10m", "-"]
    stream = [cell.strip() for cell in rows["stream"].split("│")[1:-1]]
    assert stream == ["stream", "queue", "0-2", "request_count 4/worker", "2m", "-"]
    lb = [cell.strip() for cell in rows["lb-hello"].split("│")[1:-1]]
    assert lb == ["lb-hello", "load_balancer", "0-2", "request_count 8/worker", "-", "-"]
    assert "4 endpoints OK in examples/endpoints" in result.stdout
    assert result.stderr == ""


def test_one_file_can_be_validated() -> None:
    result = _skiff("examples/endpoints/runpod-echo.hcl")
    assert result.returncode == 0, result.stderr
    assert "1 endpoint OK in examples/endpoints/runpod-echo.hcl" in result.stdout


def test_problems_go_to_stderr_one_per_line_with_exit_1() -> None:
    result = _skiff(str(BAD / "wrong_type.hcl"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{BAD}/wrong_type.hcl:2: command: must be a list such as ["a", "b"] (got "python worker.py")',
        f'{BAD}/wrong_type.hcl:5: scaling.max_workers: must be a whole number (got "many")',
        f"{BAD}/wrong_type.hcl:6: scaling.target: must be a number (got true)",
        f"{BAD}/wrong_type.hcl:9: max_retries: must be a whole number (got true)",
        f"{BAD}/wrong_type.hcl:10: env.DEBUG: must be a quoted string (got 1)",
        f"skiff validate: 5 problems in {BAD}/wrong_type.hcl",
    ]


def test_a_directory_reports_every_file_and_duplicates() -> None:
    result = _skiff(str(BAD))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    files_with_problems = {line.split(":")[0] for line in lines[:-1]}
    # Every fixture but the two halves of the duplicate has problems of its own.
    assert len(files_with_problems) == len(list(BAD.glob("*.hcl"))) - 1
    assert f"{BAD}/syntax_error.hcl:4: syntax error: unexpected `}}` (column 12)" in result.stderr
    assert f"{BAD}/zero_workers.hcl:7: scaling.max_workers: must be >= 1 (got 0)" in lines
    assert (
        f'{BAD}/duplicate_b.hcl:2: endpoint "twin": declared more than once (first in {BAD}/duplicate_a.hcl:1)' in lines
    )
    assert lines[-1] == f"skiff validate: {len(lines) - 1} problems in {BAD}"


def test_missing_directory_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = _skiff(str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"skiff validate: {tmp_path}/nope: no such file or directory"


def test_default_directory_missing_outside_the_repo(tmp_path: Path) -> None:
    result = _skiff(cwd=tmp_path)
    assert result.returncode == 2
    assert "examples/endpoints: no such file or directory" in result.stderr


def test_directory_without_endpoint_files_exits_1(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    result = _skiff(str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"skiff validate: {tmp_path}: no endpoint files (*.hcl) in this directory"


def test_unreadable_input_never_shows_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "binary.hcl").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "odd.hcl").write_text('endpoint "x" {\n  image = "[bold]markup[/bold]"\n  gpu = [1, {a = 1}]\n}\n')
    result = _skiff(str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path}/binary.hcl: not UTF-8 text (byte 0)",
        f"{tmp_path}/odd.hcl:3: gpu: is a block, not an argument: write `gpu {{ ... }}`",
        f"skiff validate: 2 problems in {tmp_path}",
    ]
