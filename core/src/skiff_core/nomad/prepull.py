"""The pre-pull job: an endpoint's image pulled on the nodes that could run it before a worker
needs it, so a scale-up from zero pays for placement and model load, not for the pull.

A `sysbatch` job (https://developer.hashicorp.com/nomad/docs/schedulers#system-batch) runs one
allocation on every eligible node, once; re-registering it with another image runs it again. Its
task is the endpoint's image with the docker driver and `true` as the entry point: Docker pulls
the image (the docker driver's default `image_pull_timeout` applies) and the task exits at once,
leaving the image in the node's cache. The image must have `true` on its PATH, as every image
built on Skiff's worker base (Debian or Ubuntu) does.

Eligible nodes are those of the endpoint's datacenters and node pool with the docker driver. A
group constraint cannot name a device model (`${device.model}` exists only in a device block), so
on a pool that mixes GPU models every node of the pool pulls.

The job is `skiff-prepull.<endpoint>`: the dot keeps it apart from every endpoint's job (endpoint
names have none) and it carries no `skiff_managed` meta, so nothing that manages endpoint jobs
touches it.
"""

from __future__ import annotations

from typing import Any

from skiff import __version__
from skiff_core.config import Settings
from skiff_core.nomad.render import JOB_PREFIX
from skiff_core.spec import EndpointSpec, validate_image_reference

PREPULL_META_KEY = "skiff_prepull_of"
GROUP = "prepull"
TASK = "pull"


def prepull_job_id(endpoint: str) -> str:
    return f"{JOB_PREFIX}prepull.{endpoint}"


def render_prepull_job(spec: EndpointSpec, settings: Settings) -> dict[str, Any]:
    """The `{"Job": {...}}` body of `POST /v1/jobs` pulling `spec.image` on every eligible node."""
    if spec.image is None:
        raise ValueError(f"endpoint {spec.name!r} has no `image` to pull")
    image = validate_image_reference(spec.image)
    job: dict[str, Any] = {
        "ID": prepull_job_id(spec.name),
        "Name": prepull_job_id(spec.name),
        "Type": "sysbatch",
        "Namespace": settings.nomad_namespace,
        "Datacenters": list(spec.datacenters if spec.datacenters is not None else settings.nomad_datacenters),
        "Meta": {PREPULL_META_KEY: spec.name, "image": image, "skiff_version": __version__},
        # api/constraint.go; "is_set" takes no RTarget (scheduler/feasible checkConstraint).
        "Constraints": [{"LTarget": "${attr.driver.docker}", "Operand": "is_set"}],
        "TaskGroups": [
            {
                "Name": GROUP,
                "Count": 1,
                # A failed pull is reported, not retried in a loop: the next deploy tries again.
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "Tasks": [
                    {
                        "Name": TASK,
                        "Driver": "docker",
                        "Config": {"image": image, "entrypoint": ["true"]},
                        "Resources": {"CPU": 50, "MemoryMB": 32},
                    }
                ],
            }
        ],
    }
    if settings.nomad_region:
        job["Region"] = settings.nomad_region
    if settings.nomad_node_pool:
        job["NodePool"] = settings.nomad_node_pool
    return {"Job": job}
