"""Under `skiff up`: a worker reads a secret set with `skiff secrets set` (or exported where skiff
up runs) and a file from its endpoint's volume, a local directory standing in for the mount."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.support.stack import SKIFF, SkiffProcess, endpoint_hcl

WORKER = "tests/workers/secret_volume_reader.py"


def _endpoint(name: str, volume: str) -> str:
    text = endpoint_hcl(name, WORKER, secrets=["HF_TOKEN"], scaling={"min_workers": 0, "max_workers": 1})
    return text.rstrip().removesuffix("}") + volume + "}\n"


def _run(stack: SkiffProcess, endpoint: str, job_input: dict[str, str]) -> dict[str, str]:
    with stack.client(timeout=120) as client:
        answer = client.post(f"/v2/{endpoint}/runsync", json={"input": job_input}).json()
    assert answer["status"] == "COMPLETED", f"{answer}\n{stack.output()[-3000:]}"
    output: dict[str, str] = answer["output"]
    return output


def test_a_worker_reads_its_secret_and_a_file_from_its_volume(tmp_path: Path) -> None:
    endpoints, state = tmp_path / "endpoints", tmp_path / "state"
    endpoints.mkdir()
    shared = tmp_path / "my-models"
    (endpoints / "llm.hcl").write_text(_endpoint("llm", '  volume "models" {\n    source = "model-cache"\n  }\n'))
    (endpoints / "own.hcl").write_text(
        _endpoint("own", f'  volume "models" {{\n    source     = "x"\n    local_path = "{shared}"\n  }}\n')
    )
    # `skiff secrets set`: the value from standard input, into <state>/secrets.json, mode 0600.
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    done = subprocess.run(
        [SKIFF, "secrets", "set", "llm", "HF_TOKEN", "--state-dir", str(state)],
        input="hf_from_the_file\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "hf_from_the_file" not in done.stdout + done.stderr
    assert stat.S_IMODE((state / "secrets.json").stat().st_mode) == 0o600
    # The default local directory of a volume: <state_dir>/volumes/<source>.
    (state / "volumes" / "model-cache").mkdir(parents=True)
    (state / "volumes" / "model-cache" / "weights.txt").write_text("tiny model")
    shared.mkdir()
    (shared / "weights.txt").write_text("my own copy")

    # "own" has no secret in the file: it comes from the environment skiff up runs in.
    # A late first ping on a busy machine is not what this test is about.
    extra = {"HF_TOKEN": "hf_from_the_environment", "SKIFF_WORKER_LOST_AFTER_S": "30"}
    stack = SkiffProcess(endpoints, state, extra).start(timeout=120)
    try:
        llm = _run(stack, "llm", {"file": "weights.txt"})
        assert llm == {
            "token": "hf_from_the_file",
            "volume": str((state / "volumes" / "model-cache").resolve()),
            "file": "tiny model",
        }
        own = _run(stack, "own", {"file": "weights.txt"})
        assert own["token"] == "hf_from_the_environment" and own["file"] == "my own copy"
        assert "hf_from_the_file" not in stack.output()
    finally:
        stack.stop()
