"""A cold start split into its parts on `skiff up`: /health's coldStartMs.parts and `skiff status`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from tests.support.stack import REPO, SKIFF, SkiffProcess, endpoint_hcl

SLOW_START_S = 1.5


def test_cold_start_parts_show_the_time_from_process_start_to_first_take(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    hcl = endpoint_hcl(
        "slow",
        "tests/workers/slow_start_echo.py",
        env={"SLOW_START_S": str(SLOW_START_S)},
        scaling={"min_workers": 1, "max_workers": 1},
    )
    stack = skiff_stack({"slow": hcl})
    stack.wait_ready_workers("slow", 1)
    with stack.client() as client:
        assert client.post("/v2/slow/runsync", json={"input": 1}).json()["output"] == 1
        cold = client.get("/v2/slow/health").json()["coldStartMs"]
    parts = cold["parts"]
    assert set(parts) == {"placement", "pull", "startToTake"}
    # The worker sleeps SLOW_START_S between its process start and its first take.
    assert SLOW_START_S * 1000 <= parts["startToTake"] <= cold["last"]
    # A local process pulls no image; spawning it is its placement; the parts add up.
    assert parts["pull"] is None and parts["placement"] >= 0
    assert abs(parts["placement"] + parts["startToTake"] - cold["last"]) <= 2  # whole ms, rounded down each

    shown = subprocess.run(
        [SKIFF, "status", "--url", stack.url, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=stack.env,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    [worker] = next(e for e in json.loads(shown.stdout)["endpoints"] if e["name"] == "slow")["workers"]
    split = worker["cold_start_parts"]
    assert split["pull_s"] is None and split["start_to_take_s"] >= SLOW_START_S
    assert split["placement_s"] + split["start_to_take_s"] <= worker["cold_start_s"] + 0.001
    table = subprocess.run(
        [SKIFF, "status", "--url", stack.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**stack.env, "COLUMNS": "200"},
        timeout=30,
    )
    assert table.returncode == 0 and "start→take" in table.stdout, table.stdout
