"""OpenTelemetry traces of jobs: one trace per job, from the request to its final state, with the
time it waited in the queue and the time it ran as children. Off unless the standard OTEL_*
variables ask for traces (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_TRACES_EXPORTER other than "none"; OTEL_SDK_DISABLED=true wins), and then nothing is imported
and every hook returns at once.

A job crosses processes (the replica that accepted it, the one a worker took it from, the one
that stored its result) and may wait for hours, so no span is held open: the ids are chosen when
the job is accepted (the job's span, a child of the client's `traceparent` when it sent one) and
when a worker takes it (the execution span), stored in the job record, and the three spans are
written with their real start and end times by whichever replica makes the job final. The
worker gets a W3C `traceparent` naming the execution span in its job, so a handler's own spans
(the Skiff SDK attaches it around the handler) land inside the job's trace.
"""

from __future__ import annotations

import atexit
import os
import random
from typing import Any

from skiff_core.jobs import JobRecord

_processor: Any = None  # a SpanProcessor once enabled
_resource: Any = None


def wanted(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return _processor is not None


def setup(service_name: str) -> None:
    """Start exporting if the environment asks for it (called once by each process's main)."""
    if _processor is not None or not wanted():
        return
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    use(BatchSpanProcessor(exporter), service_name)
    atexit.register(stop)  # flush what the batch holds


def use(processor: Any, service_name: str = "skiff") -> None:
    """Send spans to `processor` (tests: a SimpleSpanProcessor over an InMemorySpanExporter)."""
    global _processor, _resource
    from opentelemetry.sdk.resources import Resource

    _resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    _processor = processor


def stop() -> None:
    global _processor
    if _processor is not None:
        _processor.shutdown()
    _processor = None


def _new_id(bits: int) -> str:
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


def _parse(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C traceparent `00-<32 hex>-<16 hex>-<flags>`."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or set(parts[1]) == {"0"}:
        return None
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return parts[1].lower(), parts[2].lower()


def accepted(job: JobRecord, traceparent: str | None) -> None:
    """Choose the job span's ids (under the client's trace when it sent one)."""
    if _processor is None:
        return
    parent = _parse(traceparent)
    trace_id = parent[0] if parent else _new_id(128)
    job.trace = {"trace_id": trace_id, "span_id": _new_id(64), "parent_id": parent[1] if parent else None}


def execution_id() -> str | None:
    """A new execution span id for a job being handed to a worker (JobRecords.claim puts it in a
    traced job's trace); None when tracing is off."""
    if _processor is None:
        return None
    return _new_id(64)


def worker_traceparent(job: JobRecord) -> str | None:
    """What the worker gets: the execution span as the parent of its own spans."""
    trace = job.trace
    if not trace or not trace.get("execution_id"):
        return None
    return f"00-{trace['trace_id']}-{trace['execution_id']}-01"


def finished(job: JobRecord) -> None:
    """Write the job's spans: the job, its queue wait and its execution (when it ran)."""
    if _processor is None or not job.trace:
        return
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace = job.trace
    trace_id = int(trace["trace_id"], 16)

    def context(span_id: str) -> SpanContext:
        return SpanContext(trace_id, int(span_id, 16), is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def ns(at: float) -> int:
        return int(at * 1e9)

    end = job.completed_at or job.created_at
    attributes = {
        "skiff.job.id": job.id,
        "skiff.endpoint": job.endpoint,
        "skiff.job.status": job.status.value,
        "skiff.job.retries": job.retries,
    }
    if job.worker_id:
        attributes["skiff.worker.id"] = job.worker_id
    if job.request_id:
        attributes["skiff.request_id"] = job.request_id
    ok = job.status.value == "COMPLETED"
    job_span = context(trace["span_id"])
    parent = context(trace["parent_id"]) if trace.get("parent_id") else None
    spans = [
        ReadableSpan(
            f"job {job.endpoint}",
            context=job_span,
            parent=parent,
            resource=_resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            status=Status(
                StatusCode.OK if ok else StatusCode.ERROR, None if ok else str(job.error or job.status)[:200]
            ),
            start_time=ns(job.created_at),
            end_time=ns(end),
        )
    ]
    started = job.started_at
    spans.append(
        ReadableSpan(
            "queue wait",
            context=context(_new_id(64)),
            parent=job_span,
            resource=_resource,
            attributes={"skiff.job.id": job.id},
            start_time=ns(job.created_at),
            end_time=ns(started if started is not None else end),
        )
    )
    if started is not None and trace.get("execution_id"):
        spans.append(
            ReadableSpan(
                "execution",
                context=context(trace["execution_id"]),
                parent=job_span,
                resource=_resource,
                attributes={"skiff.job.id": job.id, "skiff.worker.id": job.worker_id or ""},
                start_time=ns(started),
                end_time=ns(end),
            )
        )
    for span in spans:
        _processor.on_end(span)
