"""The environment a worker gets (docs/compatibility.md, "Worker protocol"): the runpod SDK's variables pointing at
the gateway's worker routes. Shared by the local orchestrator and the Nomad job renderer."""

from __future__ import annotations

from skiff_core.spec import EndpointSpec, volume_env

# The runpod SDK appends `&job_in_progress=..`, `&isStream=..` to these URLs, so each already
# carries a query string; `$ID` and `$RUNPOD_POD_ID` are substituted by the SDK itself.
_TAKE = "{base}/v2/{ep}/job-take/$ID?gpu={gpu}"
_DONE = "{base}/v2/{ep}/job-done/$RUNPOD_POD_ID/$ID?gpu={gpu}"
_STREAM = "{base}/v2/{ep}/job-stream/$RUNPOD_POD_ID/$ID?gpu={gpu}"
_PING = "{base}/v2/{ep}/ping/$RUNPOD_POD_ID"


def worker_environment(
    spec: EndpointSpec, *, gateway_url: str, worker_key: str, worker_id: str, ping_interval_s: float
) -> dict[str, str]:
    base = gateway_url.rstrip("/")
    gpu = "cuda" if spec.gpu and spec.gpu.count else "none"
    env = dict(spec.env)
    # Where each volume is: its mount path in a cluster (the local orchestrator points these at
    # local directories instead).
    env.update({volume_env(label): volume.path for label, volume in spec.volume.items()})
    env.update(
        {
            "RUNPOD_WEBHOOK_GET_JOB": _TAKE.format(base=base, ep=spec.name, gpu=gpu),
            "RUNPOD_WEBHOOK_POST_OUTPUT": _DONE.format(base=base, ep=spec.name, gpu=gpu),
            "RUNPOD_WEBHOOK_POST_STREAM": _STREAM.format(base=base, ep=spec.name, gpu=gpu),
            "RUNPOD_WEBHOOK_PING": _PING.format(base=base, ep=spec.name),
            # runpod divides this by 1000 with integer division: below 1000 ms it pings in a busy loop.
            "RUNPOD_PING_INTERVAL": str(max(1000, int(ping_interval_s * 1000))),
            "RUNPOD_AI_API_KEY": worker_key,
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_ENDPOINT_ID": spec.name,
            "RUNPOD_POD_HOSTNAME": worker_id,
            "SKIFF_ENDPOINT": spec.name,
            "SKIFF_GATEWAY_URL": base,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
