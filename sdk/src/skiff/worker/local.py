"""Local test modes, as runpod's rp_local.py (SDK 1.12) offers them.

`python worker.py --test_input '{"input": {...}}'` runs that one job; with no
RUNPOD_WEBHOOK_GET_JOB set, a `test_input.json` in the working directory is run instead. The
result is printed and the process exits 0, or 1 when the handler failed. Lines keep runpod's
wording; the result line is JSON (runpod prints a Python repr) so scripts can parse it.
Unlike runpod, generator handlers work here too: their chunks are collected into a list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from skiff.worker.config import WorkerConfig
from skiff.worker.handlers import Handler, run_to_result
from skiff.worker.log import log

TEST_INPUT_FILE = "test_input.json"
LOCAL_JOB_ID = "local_test"


def _no_job_source() -> str:
    return (
        "Nothing to run: RUNPOD_WEBHOOK_GET_JOB is not set (so this is not running under Skiff or "
        f"Runpod), no --test_input was given and there is no {TEST_INPUT_FILE} in {os.getcwd()}. "
        "Test the handler with: python your_worker.py --test_input '{\"input\": {...}}'"
    )


class LocalJobError(ValueError):
    """The local test job could not be read; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    # Same flags as runpod/serverless/__init__.py so worker command lines carry over.
    parser = argparse.ArgumentParser(prog="skiff", description="Skiff serverless worker arguments.")
    parser.add_argument("--rp_log_level", type=str, default=None, help="ERROR, WARN, INFO, DEBUG or TRACE.")
    parser.add_argument("--rp_debugger", action="store_true", default=None, help="Accepted for runpod parity.")
    parser.add_argument("--rp_serve_api", action="store_true", default=None, help="Not supported by Skiff.")
    parser.add_argument("--rp_api_port", type=int, default=8000)
    parser.add_argument("--rp_api_concurrency", type=int, default=1)
    parser.add_argument("--rp_api_host", type=str, default="localhost")
    parser.add_argument("--test_input", type=str, default=None, help="A test job as JSON: '{\"input\": ...}'.")
    return parser


def parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Known flags as a dict, plus the arguments that are the user's own (runpod leaves those in argv)."""
    args, unknown = build_parser().parse_known_args(argv)
    return vars(args), unknown


def _validate_job(raw: Any, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise LocalJobError(f'{source} must be a JSON object like {{"input": {{...}}}}, got {type(raw).__name__}')
    if raw.get("input") is None:
        raise LocalJobError(f'{source} has no "input": expected {{"input": {{...}}}}')
    job = dict(raw)
    job["id"] = job.get("id", LOCAL_JOB_ID)
    return job


def load_test_job(test_input: str | None) -> dict[str, Any] | None:
    """The job to run locally: from --test_input, else test_input.json, else None."""
    if test_input is not None:
        log.info("test_input set, using test_input as job input.")
        try:
            raw = json.loads(test_input)
        except json.JSONDecodeError as err:
            raise LocalJobError(f"--test_input is not valid JSON: {err}") from None
        return _validate_job(raw, "--test_input")
    if not os.path.exists(TEST_INPUT_FILE):
        return None
    log.info(f"Using {TEST_INPUT_FILE} as job input.")
    try:
        with open(TEST_INPUT_FILE, encoding="utf-8") as file:
            raw = json.load(file)
    except json.JSONDecodeError as err:
        raise LocalJobError(f"{TEST_INPUT_FILE} is not valid JSON: {err}") from None
    except OSError as err:
        raise LocalJobError(f"cannot read {TEST_INPUT_FILE}: {err}") from None
    return _validate_job(raw, TEST_INPUT_FILE)


def run_local(handler: Handler, test_input: str | None, config: WorkerConfig) -> int:
    """Run one local job; returns the exit code (0 success, 1 handler error or no job)."""
    try:
        job = load_test_job(test_input)
    except LocalJobError as err:
        log.error(str(err))
        return 1
    if job is None:
        log.error(_no_job_source())
        return 1
    log.debug(f"Retrieved local job: {job}")
    result = asyncio.run(run_to_result(handler, job, worker_id=config.worker_id, hostname=config.hostname))
    if result.get("error"):
        log.error(f"Job {job['id']} failed with error: {result['error']}")
        return 1
    log.info(f"Job {job['id']} completed successfully.")
    log.info(f"Job result: {json.dumps(result, ensure_ascii=False, default=repr)}")
    log.info("Local testing complete, exiting.")
    return 0


def main_local(handler: Handler, test_input: str | None, config: WorkerConfig) -> None:
    code = run_local(handler, test_input, config)
    sys.stdout.flush()
    sys.exit(code)
