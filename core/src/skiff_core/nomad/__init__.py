"""Nomad: rendering an endpoint into a Nomad job, and a small client for the HTTP API."""

from skiff_core.nomad.render import (
    GROUP_NAME,
    HTTP_PORT_LABEL,
    TASK_NAME,
    ImageReferenceError,
    RenderOptions,
    job_id,
    render_hcl,
    render_job,
    service_name,
    validate_image_reference,
)

__all__ = [
    "GROUP_NAME",
    "HTTP_PORT_LABEL",
    "TASK_NAME",
    "ImageReferenceError",
    "RenderOptions",
    "job_id",
    "render_hcl",
    "render_job",
    "service_name",
    "validate_image_reference",
]
