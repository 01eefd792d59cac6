"""The Nomad double's transcribed rules, each against the rendering Skiff sends, and Skiff's side
of each: what it renders passes them, and what Nomad refuses is reported, not retried."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from skiff_core.config import Settings
from skiff_core.endpoints import load_endpoints
from skiff_core.nomad.client import NomadBadRequest, NomadClient
from skiff_core.nomad.render import render_job
from skiff_core.orchestrator.nomad import NomadOrchestrator
from skiff_core.spec import EndpointSpec
from tests.support.doubles.nomad import HttpError, NomadDouble, canonical_group_update, validate_job

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(public_url="http://skiff-gateway.service.consul:8000")
S = 1_000_000_000


def endpoint(**overrides: Any) -> EndpointSpec:
    fields: dict[str, Any] = {"name": "echo", "image": "ghcr.io/acme/echo:1", "scaling": {"max_workers": 3}}
    fields.update(overrides)
    return EndpointSpec(**fields)


def rendered_jobs() -> dict[str, dict[str, Any]]:
    specs = load_endpoints(ROOT / "examples/endpoints")
    jobs = {name: render_job(spec, SETTINGS)["Job"] for name, spec in specs.items()}
    jobs["one-hour"] = render_job(endpoint(name="one-hour", execution_timeout="3600s"), SETTINGS)["Job"]
    return jobs


def refusal(job: dict[str, Any]) -> HttpError | None:
    try:
        validate_job(job)
    except HttpError as err:
        return err
    return None


@pytest.mark.parametrize("name", ["echo", "stream", "runpod-echo", "lb-hello", "one-hour"])
def test_every_example_and_a_one_hour_timeout_pass_nomads_job_validation(name: str) -> None:
    assert refusal(rendered_jobs()[name]) is None


def test_canonicalisation_gives_a_maxparallel_0_group_the_10_minute_progress_deadline() -> None:
    """api/jobs.go UpdateStrategy.Canonicalize + api/tasks.go TaskGroup.Canonicalize."""
    job = {"Type": "service", "Update": {"MaxParallel": 0}, "TaskGroups": [{"Name": "worker"}]}
    update = canonical_group_update(job, job["TaskGroups"][0])
    assert update is not None
    assert (update["MaxParallel"], update["ProgressDeadline"], update["Stagger"]) == (0, 600 * S, 30 * S)
    # A group's own strategy is merged over the job's; an explicit 0 is kept (non-nil pointer).
    job["TaskGroups"][0]["Update"] = {"ProgressDeadline": 0}
    assert canonical_group_update(job, job["TaskGroups"][0])["ProgressDeadline"] == 0  # type: ignore[index]
    # No job Update on a service job: the default strategy (deployments on).
    assert canonical_group_update({"Type": "service"}, {"Name": "g"})["MaxParallel"] == 1  # type: ignore[index]
    # A batch job without one has none.
    assert canonical_group_update({"Type": "batch"}, {"Name": "g"}) is None


def test_a_kill_timeout_over_the_progress_deadline_is_refused_with_500() -> None:
    """nomad/structs/structs.go Task.Validate, as the pre-fix rendering (MaxParallel 0 alone and a
    615 s KillTimeout) met it: the job Skiff used to send for any execution timeout > 585 s."""
    job = copy.deepcopy(rendered_jobs()["echo"])
    job["Update"] = {"MaxParallel": 0}
    err = refusal(job)
    assert err is not None and err.status == 500
    assert err.text == (
        "1 error occurred:\n\t* Task group worker validation failed: 1 error occurred:\n"
        "\t* Task worker validation failed: 1 error occurred:\n"
        "\t* KillTimout (10m15s) longer than the group's ProgressDeadline (10m0s)\n\n\n\n\n\n"
    )
    job["Update"] = {"MaxParallel": 0, "ProgressDeadline": 0}
    assert refusal(job) is None


def test_update_strategy_validation() -> None:
    """nomad/structs/structs.go UpdateStrategy.Validate."""
    job = copy.deepcopy(rendered_jobs()["stream"])
    job["Update"] = {"MaxParallel": -1, "HealthyDeadline": 700 * S}
    err = refusal(job)
    assert err is not None and err.status == 500
    assert "Max parallel can not be less than zero: -1 < 0" in err.text
    assert "Healthy deadline must be less than progress deadline: 11m40s > 10m0s" in err.text


async def test_a_refused_registration_is_reported_once_not_retried_as_transient() -> None:
    """Nomad answers Job.Validate's errors with 500; the client used to retry them four times."""
    body = render_job(endpoint(), SETTINGS)
    body["Job"]["Update"] = {"MaxParallel": 0}
    with NomadDouble() as nomad:
        client = NomadClient(nomad.address, retries=4, backoff_s=0.01)
        with pytest.raises(NomadBadRequest, match=r"KillTimout \(10m15s\) longer than the group's ProgressDeadline"):
            await client.register(body)
        await client.close()
        assert [p for _, p, _ in nomad.requests] == ["/v1/jobs"]
        assert "skiff-echo" not in nomad.jobs


SCOPED_CAPS = {"submit-job", "read-job", "scale-job", "variables:read", "variables:write", "variables:destroy"}


async def test_a_namespace_scoped_token_checks_placement_in_its_namespace() -> None:
    """nomad/eval_endpoint.go GetEval checks read-job on the request's namespace: the evaluation
    read must name it (python-nomad's does not, so every placement check got 403)."""
    with NomadDouble(acl_tokens={"scoped": SCOPED_CAPS}, token_namespaces={"scoped": {"skiff"}}) as nomad:
        settings = Settings(nomad_addr=nomad.address, nomad_token="scoped", nomad_namespace="skiff")
        client = NomadClient(nomad.address, token="scoped", namespace="skiff", retries=0)
        orch = NomadOrchestrator(settings, client=client, worker_key=lambda name: f"skw_{name}")
        await orch.apply(endpoint())
        await orch.scale("echo", 1)
        evals = [p for m, p, _ in nomad.requests if p.startswith("/v1/evaluation/")]
        assert len(evals) >= 2
        await orch.close()


def test_the_double_refuses_an_evaluation_read_outside_the_tokens_namespaces() -> None:
    with NomadDouble(acl_tokens={"scoped": SCOPED_CAPS}, token_namespaces={"scoped": {"skiff"}}) as nomad:
        with nomad.lock:
            ev = nomad._new_eval({"ID": "j", "Namespace": "skiff", "Type": "service", "JobModifyIndex": 1}, "test")
        path = f"/v1/evaluation/{ev['ID']}"
        for query, status in (({}, 403), ({"namespace": "other"}, 403), ({"namespace": "skiff"}, 200)):
            try:
                got = nomad.route("GET", path, query, None, "scoped")[0]
            except HttpError as err:
                got = err.status
            assert got == status, query
        # The evaluation's own namespace is checked too.
        with nomad.lock:
            ev["Namespace"] = "other"
        with pytest.raises(HttpError, match="Permission denied"):
            nomad.route("GET", path, {"namespace": "skiff"}, None, "scoped")


def test_a_service_name_over_63_characters_is_refused() -> None:
    """nomad/structs/services.go Service.ValidateName, reached through TaskGroup.validateServices."""
    job = copy.deepcopy(rendered_jobs()["lb-hello"])
    name = "skiff-" + "a" * 58
    job["TaskGroups"][0]["Services"][0]["Name"] = name
    err = refusal(job)
    assert err is not None and err.status == 500
    assert (
        f"Task group service validation failed: Service[0] {name} validation failed: Service name must be valid "
        f"per RFC 1123 and can contain only alphanumeric characters or dashes and must be no longer than 63 "
        f'characters: "{name}"'
    ) in err.text
    job["TaskGroups"][0]["Services"][0]["Name"] = name[:-1]
    assert refusal(job) is None
