"""A job's trace context around its handler: the gateway hands each job a W3C `traceparent`
when tracing is on (docs/operations.md, "Traces"), and the handler's own OpenTelemetry spans
become children of the job's execution span. Without opentelemetry installed, or without a
traceparent, this does nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def joined(job: dict[str, Any]) -> Iterator[None]:
    traceparent = job.get("traceparent")
    if not isinstance(traceparent, str) or not traceparent:
        yield
        return
    try:
        from opentelemetry import context, propagate
    except ImportError:
        yield
        return
    token = context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
