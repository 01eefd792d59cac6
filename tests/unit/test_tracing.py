"""Job traces through an in-memory exporter: one trace per job (the job's span, its queue wait
and its execution as children, under the client's traceparent when it sent one), and a Skiff SDK
handler's own span inside it, in the execution span. Off when unset: no ids, no traceparent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from skiff.worker.handlers import run_job
from skiff_core import tracing
from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.keys import KeyRing
from skiff_core.spec import EndpointSpec
from skiff_gateway.context import GatewayContext

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)  # what a worker's own OpenTelemetry setup does
SPEC = EndpointSpec(name="ep", command=["true"])


@pytest.fixture
async def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GatewayContext]:
    # Each test turns tracing on (or not) for itself; shutting a processor down would stop EXPORTER.
    monkeypatch.setattr(tracing, "_processor", None)
    settings = Settings(state_dir=tmp_path)
    backends = Backends.build(settings)
    context = GatewayContext.build(
        settings, backends.queue, backends.store, EndpointCatalog([SPEC]), KeyRing("sk_test_key"), backends.payloads
    )
    await backends.queue.ensure("ep", max_receives=3)
    EXPORTER.clear()
    yield context
    await backends.close()


def handler(job: dict[str, Any]) -> dict[str, Any]:
    with trace.get_tracer("handler").start_as_current_span("model call"):
        return {"echo": job["input"]}


async def one_job(ctx: GatewayContext, traceparent: str | None = None) -> dict[str, Any]:
    job = await ctx.jobs.submit(SPEC, {"input": {"x": 1}}, sync=False, request_id="r1", traceparent=traceparent)
    (taken,) = await ctx.jobs.take(SPEC, "w1", 1, wait=1)
    result = await run_job(handler, taken)
    await ctx.jobs.finish(SPEC, "w1", job.id, result)
    return taken


async def test_one_trace_per_job_with_its_queue_wait_execution_and_the_handlers_span(ctx: GatewayContext) -> None:
    tracing.use(SimpleSpanProcessor(EXPORTER), "test")
    taken = await one_job(ctx)
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    assert set(spans) == {"job ep", "queue wait", "execution", "model call"}
    root, wait, run, model = spans["job ep"], spans["queue wait"], spans["execution"], spans["model call"]
    assert len({s.context.trace_id for s in spans.values()}) == 1  # one trace
    assert root.parent is None
    assert wait.parent.span_id == root.context.span_id and run.parent.span_id == root.context.span_id
    # The worker got the execution span as its parent: the handler's span sits inside it.
    assert taken["traceparent"] == f"00-{root.context.trace_id:032x}-{run.context.span_id:016x}-01"
    assert model.parent.span_id == run.context.span_id
    assert root.start_time <= wait.start_time <= wait.end_time <= run.start_time <= run.end_time <= root.end_time
    assert root.attributes["skiff.job.status"] == "COMPLETED" and root.attributes["skiff.request_id"] == "r1"

    EXPORTER.clear()
    await one_job(ctx)  # a second job is a second trace
    second = {s.name: s for s in EXPORTER.get_finished_spans()}
    assert second["job ep"].context.trace_id != root.context.trace_id


async def test_a_clients_traceparent_is_the_jobs_parent(ctx: GatewayContext) -> None:
    tracing.use(SimpleSpanProcessor(EXPORTER), "test")
    client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await one_job(ctx, client)
    root = next(s for s in EXPORTER.get_finished_spans() if s.name == "job ep")
    assert f"{root.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert root.parent is not None and f"{root.parent.span_id:016x}" == "b7ad6b7169203331"


async def test_off_when_unset(ctx: GatewayContext, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    tracing.setup("test")
    assert not tracing.enabled()
    taken = await one_job(ctx)
    assert "traceparent" not in taken
    assert [s.name for s in EXPORTER.get_finished_spans()] == ["model call"]  # only the handler's own
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none"})
