"""The Nomad double's transcribed rules, each against the rendering Skiff sends, and Skiff's side
of each: what it renders passes them, and what Nomad refuses is reported, not retried."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from skiff_core.config import Settings
from skiff_core.endpoints import load_endpoints
from skiff_core.nomad.client import NomadBadRequest, NomadClient
from skiff_core.nomad.prepull import render_prepull_job
from skiff_core.nomad.render import render_job
from skiff_core.orchestrator.base import WorkerPhase
from skiff_core.orchestrator.nomad import NomadOrchestrator
from skiff_core.orchestrator.nomad_stops import could_stop, possible_stops, surely_stopped
from skiff_core.spec import EndpointSpec
from tests.support.doubles.nomad import (
    HttpError,
    NomadDouble,
    canonical_group_update,
    compute_stop,
    validate_job,
)
from tests.support.wait import eventually_async

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


def test_a_sysbatch_job_takes_no_reschedule_policy_and_no_update_block() -> None:
    """nomad/structs/structs.go TaskGroup.Validate for the pre-pull job Skiff renders."""
    job = render_prepull_job(endpoint(), SETTINGS)["Job"]
    assert refusal(copy.deepcopy(job)) is None
    job["TaskGroups"][0]["ReschedulePolicy"] = {"Attempts": 0}
    job["TaskGroups"][0]["Update"] = {"MaxParallel": 1}
    err = refusal(job)
    assert err is not None and err.status == 500
    assert "System or sysbatch jobs should not have a reschedule policy" in err.text
    assert 'Job type "sysbatch" does not allow update block' in err.text


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


# --- which allocations a lower Count stops -------------------------------------------------------
def alloc(index: int, client: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "ID": f"a{index}",
        "Name": f"skiff-echo.worker[{index}]",
        "DesiredStatus": "run",
        "ClientStatus": client,
        "NextAllocation": "",
        "_index": index,
        **extra,
    }


def double_stops(allocs: list[dict[str, Any]], count: int, due: tuple[str, ...] = ()) -> set[str]:
    live = [a for a in allocs if a["ClientStatus"] != "failed"]
    migrate = [a for a in live if (a.get("DesiredTransition") or {}).get("Migrate")]
    untainted = [a for a in live if a not in migrate]
    untainted += [a for a in allocs if a["ClientStatus"] == "failed" and a["ID"] not in due]
    now = [a for a in allocs if a["ID"] in due]
    return {a["ID"] for a in compute_stop(untainted, migrate, now, count, random.Random(0))}


def test_the_double_stops_what_computestop_stops() -> None:
    """scheduler/reconcile.go computeStop (v1.9.7), in the states of issue 10."""
    steady = [alloc(i) for i in range(4)]
    assert double_stops(steady, 2) == {"a2", "a3"}
    # [0] failed, waiting for its delayed reschedule: it counts and holds index 0, so 3 -> 1
    # removes two and the two highest indexes are both running.
    assert double_stops([alloc(0, "failed"), alloc(1), alloc(2)], 1) == {"a1", "a2"}
    # On a draining node: stopped first.
    assert double_stops([alloc(0, DesiredTransition={"Migrate": True}), alloc(1), alloc(2)], 2) == {"a0"}
    # [2] failed and due now: it holds the highest index but is not a candidate, one of [0] and
    # [1] is removed, in map order.
    seen = set()
    for seed in range(20):
        allocs = [alloc(0), alloc(1), alloc(2, "failed")]
        untainted, now = allocs[:2], allocs[2:]
        seen |= {a["ID"] for a in compute_stop(untainted, [], now, 1, random.Random(seed))}
    assert seen == {"a0", "a1"}


def test_skiffs_prediction_covers_every_outcome() -> None:
    steady = [alloc(i) for i in range(4)]
    assert could_stop(possible_stops(steady, 2), steady) == {"a2", "a3"}
    assert surely_stopped(possible_stops(steady, 2)) == {"a2", "a3"}
    example = [alloc(0, "failed"), alloc(1), alloc(2)]
    assert {"a1", "a2"} <= could_stop(possible_stops(example, 1), example)
    draining = [alloc(0, DesiredTransition={"Migrate": True}), alloc(1), alloc(2)]
    assert could_stop(possible_stops(draining, 2), draining) == {"a0"}
    due = [alloc(0), alloc(1), alloc(2, "failed")]
    assert {"a0", "a1"} <= could_stop(possible_stops(due, 1), due)
    assert surely_stopped(possible_stops(due, 1)) == frozenset()


async def test_a_scale_down_never_stops_an_undrained_worker_next_to_a_failed_one() -> None:
    """Issue 10's example: [0] failed awaiting reschedule, [1] and [2] running, 3 -> 1 with [2]
    drained. Lowering Count to 1 makes Nomad stop [1] and [2]; [1] was not drained."""
    with NomadDouble() as nomad:
        settings = Settings(nomad_addr=nomad.address)
        client = NomadClient(nomad.address, retries=0)
        orch = NomadOrchestrator(settings, client=client, worker_key=lambda n: f"skw_{n}", deferred_stops=True)
        await orch.apply(endpoint())
        await orch.scale("echo", 3)
        await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 3)
        by_index = {a["_index"]: a["ID"] for a in nomad.live_allocs("skiff-echo")}
        nomad.set_client_status(by_index[0], "failed")  # rescheduled after 10 s (ReschedulePolicy)
        # The controller wants one worker and drained [2].
        await orch.scale("echo", 1, stop=[by_index[2]])
        await eventually_async(lambda: nomad.allocs[by_index[2]]["DesiredStatus"] == "stop")
        assert nomad.allocs[by_index[1]]["DesiredStatus"] == "run", "an undrained worker was stopped"
        # Non-deferred callers are told what a lower count could stop.
        strict = NomadOrchestrator(settings, client=NomadClient(nomad.address), worker_key=lambda n: "k")
        assert by_index[1] in await strict.stop_candidates("echo", 0)
        await strict.close()
        await orch.close()


async def test_preserved_counts_are_applied_after_validation() -> None:
    """nomad/job_endpoint.go Register: PreserveCounts after the admission controllers."""
    with NomadDouble() as nomad:
        client = NomadClient(nomad.address, retries=0)
        await client.register(render_job(endpoint(scaling={"max_workers": 3}), SETTINGS))
        await client.scale("skiff-echo", "worker", 3, "three")
        await client.register(render_job(endpoint(scaling={"max_workers": 2}), SETTINGS), preserve_counts=True)
        assert nomad.jobs["skiff-echo"]["TaskGroups"][0]["Count"] == 3
        await client.close()


async def test_a_worker_on_a_draining_node_is_what_a_lower_count_stops_first() -> None:
    """computeStop stops migrating allocations first; only GET /v1/allocation/:id shows the mark
    (DesiredTransition), so the orchestrator reads it before lowering Count."""
    with NomadDouble() as nomad:
        settings = Settings(nomad_addr=nomad.address)
        orch = NomadOrchestrator(
            settings, client=NomadClient(nomad.address, retries=0), worker_key=lambda n: "k", deferred_stops=True
        )
        await orch.apply(endpoint())
        await orch.scale("echo", 3)
        await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 3)
        by_index = {a["_index"]: a["ID"] for a in nomad.live_allocs("skiff-echo")}
        nomad.mark_migrating(by_index[0])
        assert await orch.stop_candidates("echo", 2) == [by_index[0]]
        # [2] is drained, but Count 2 would stop [0]: Count stays, [2] lingers as retiring.
        await orch.scale("echo", 2, stop=[by_index[2]])
        assert nomad.jobs["skiff-echo"]["TaskGroups"][0]["Count"] == 3
        assert nomad.allocs[by_index[1]]["DesiredStatus"] == nomad.allocs[by_index[2]]["DesiredStatus"] == "run"
        # The scale's evaluation migrated [0] (computeMigrations): a replacement took its name.
        assert nomad.allocs[by_index[0]]["DesiredDescription"] == "alloc is being migrated"
        workers = {w.id: w.phase for w in await orch.workers("echo")}
        assert workers[by_index[2]] is WorkerPhase.STOPPING
        await orch.close()
