"""The worker runtime behind `skiff.serverless`, one concern per module.

    config     the RUNPOD_* environment, read once (worker id, gateway URLs, key)
    transport  HTTP to the gateway: headers, errors, backoff, the clients
    heartbeat  pings                       (config, transport)
    progress   progress_update             (config, transport)
    handlers   running a user handler on one job
    loop       the job loop: take, run, post, stop channel   (config, transport, handlers, progress)
    fitness    checks run before the first job
    local      the local test modes (--test_input, test_input.json)
    serve      wires fitness, loop, heartbeat and progress to one config
    log        the worker log, used by all

Imports only go down this list's dependencies (tests/test_sdk_layout.py checks there is no cycle).
"""
