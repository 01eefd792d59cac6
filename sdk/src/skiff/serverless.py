"""The worker API, a drop-in for `runpod.serverless`: `import skiff` then `skiff.serverless.start(...)`.

    def handler(job):
        return {"echo": job["input"]}

    skiff.serverless.start({"handler": handler})

`start` config keys (as runpod): `handler` (sync, async, generator or async generator; gets the
job dict with `id` and `input`), `return_aggregate_stream`, `concurrency_modifier`
(`current -> int` jobs at once), `refresh_worker` (replace the worker after each job).
Run under Skiff or Runpod (RUNPOD_WEBHOOK_GET_JOB set) it serves jobs until SIGTERM; run by hand
it executes `--test_input '{"input": ...}'` or `test_input.json` once and exits.
"""

from __future__ import annotations

import sys
from typing import Any

from skiff._version import SDK_VERSION, __version__
from skiff.worker.config import WorkerConfig
from skiff.worker.fitness import register_fitness_check
from skiff.worker.local import main_local, parse_args
from skiff.worker.log import log
from skiff.worker.progress import progress_update
from skiff.worker.serve import run_worker

__all__ = ["progress_update", "register_fitness_check", "runpod_version", "skiff_version", "start"]

skiff_version = __version__
# runpod.serverless exports `runpod_version`; some workers log it. Here it names the Skiff SDK.
runpod_version = SDK_VERSION


def start(config: dict[str, Any]) -> None:
    """Start the worker: serve jobs from the gateway, or run the local test job and exit."""
    print(f"--- Starting Serverless Worker |  Version {SDK_VERSION} ---", flush=True)
    # The environment is read here, once; every part of the worker gets what it needs from this.
    env = WorkerConfig.from_environ()
    log.configure(json_lines=env.endpoint_id is not None, level=env.log_level)
    for warning in env.warnings:
        log.warn(warning)
    if not isinstance(config, dict):
        log.error('start() takes a dict: skiff.serverless.start({"handler": handler})')
        sys.exit(2)
    args, rest = parse_args(sys.argv[1:])
    # As runpod: the SDK's flags are consumed, the program's own arguments stay in sys.argv.
    sys.argv = [sys.argv[0], *rest]
    config["rp_args"] = args
    if args["rp_log_level"]:
        log.set_level(args["rp_log_level"])
    handler = config.get("handler")
    if not callable(handler):
        log.error('start() needs {"handler": <function taking the job dict>}')
        sys.exit(2)
    if args["rp_serve_api"]:
        log.error(
            "--rp_serve_api (runpod's local FastAPI server) is not part of the Skiff SDK. Use "
            "--test_input for one job, or `skiff up` to serve the endpoint with the real gateway."
        )
        sys.exit(2)

    if args["test_input"] is not None or env.gateway is None:
        main_local(handler, args["test_input"], env)
        return
    try:
        code = run_worker(config, env.gateway)
    except ValueError as err:
        log.error(str(err))
        sys.exit(2)
    if code:
        sys.exit(code)
