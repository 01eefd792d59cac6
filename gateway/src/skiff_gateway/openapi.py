"""The OpenAPI 3.1 document of the gateway, served at /openapi.json.

Written by hand: the hot routes parse their own bodies (routing.py), so there is no model to
generate it from. tests/unit/test_openapi.py checks that it names every route the app serves,
with the same methods, and nothing else (HEAD, which Starlette adds to every GET, left out).
"""

from __future__ import annotations

from typing import Any

from skiff import __version__

JSON = "application/json"

_ERROR = {"$ref": "#/components/schemas/Error"}


def _response(description: str, schema: dict[str, Any] | None = None, headers: dict[str, Any] | None = None) -> Any:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {JSON: {"schema": schema}}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
# What any keyed route may answer besides its own success.
_ERRORS = {
    "400": _response("bad input: the message says what", _ERROR),
    "401": _response("missing or invalid API key", _ERROR),
    "403": _response("a worker key used outside its endpoint's worker routes", _ERROR),
    "404": _response("unknown endpoint or job", _ERROR),
    "413": _response("request body larger than the route's limit", _ERROR),
    "429": _response("too many requests", _ERROR, _RETRY_AFTER),
    "503": _response("the job store or the queue is unavailable; retry later", _ERROR, _RETRY_AFTER),
    "507": _response("no space left to store the job", _ERROR, _RETRY_AFTER),
}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None, description: str = "") -> Any:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }
    if description:
        out["description"] = description
    return out


_ENDPOINT = _param("endpoint", description="endpoint name")
_JOB = _param("job_id", description="job id")
_WORKER = _param("worker_id", description="the worker's id (RUNPOD_POD_ID)")
_WAIT = _param(
    "wait", "query", {"type": "integer", "minimum": 0, "maximum": 300_000}, "how long to wait for the job, in ms"
)


def _op(
    summary: str,
    tag: str,
    params: list[Any],
    ok: Any,
    body: dict[str, Any] | None = None,
    *,
    keyed: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "parameters": params, "responses": {"200": ok}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if keyed:
        op["responses"].update(_ERRORS)
    else:
        op["security"] = []
    op["responses"].update(extra or {})
    return op


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NO_WORK = {"204": _response("nothing to hand out within the long poll")}


def _build() -> dict[str, Any]:
    job = _response("the job", _ref("Job"))
    job_state = _response("the job's id and status", _ref("JobState"))
    ok = _response("accepted", {"type": "object", "properties": {"status": {"const": "ok"}}})
    worker = [_ENDPOINT, _WORKER]
    status_op = _op("a job's status and output", "client", [_ENDPOINT, _JOB, _WAIT], job)
    stream_op = _op(
        "stream items produced since the last call",
        "client",
        [_ENDPOINT, _JOB, _WAIT],
        _response("items", _ref("Stream")),
    )
    status_sync_op = _op(
        "wait up to `wait` ms for a final state, then the job's status", "client", [_ENDPOINT, _JOB, _WAIT], job
    )
    openai_answer = {
        "description": "the worker's OpenAI object, or with `stream: true` a text/event-stream of its chunks",
        "content": {JSON: {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}},
        "headers": {"X-Skiff-Job-Id": {"description": "the job that served it", "schema": {"type": "string"}}},
    }
    openai_errors = {"504": _response("no answer in time; the job goes on", _ref("OpenAIError"))}

    def openai_op(summary: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return _op(summary, "openai", [_ENDPOINT], openai_answer, body, extra=openai_errors)

    key_record = _response("the key's record (never the key)", _ref("KeyRecord"))
    lb_methods = ["get", "post", "put", "patch", "delete", "options"]
    lb_op = {
        "summary": "proxied to a healthy worker of a load_balancer endpoint",
        "tags": ["load balancer"],
        "responses": {
            "200": {"description": "the worker's answer, any status and body"},
            "502": _response("the worker failed before answering", _ERROR),
            **_ERRORS,
        },
    }
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("liveness", "meta", [], _response("alive", _ref("Liveness")), keyed=False)},
        "/openapi.json": {
            "get": _op("this document", "meta", [], _response("OpenAPI 3.1", {"type": "object"}), keyed=False)
        },
        "/v2/{endpoint}/run": {"post": _op("queue a job", "client", [_ENDPOINT], job_state, _ref("RunRequest"))},
        "/v2/{endpoint}/runsync": {
            "post": _op("run a job and wait for its result", "client", [_ENDPOINT, _WAIT], job, _ref("RunRequest"))
        },
        "/v2/{endpoint}/status/{job_id}": {"get": status_op, "post": status_op},
        "/v2/{endpoint}/status-sync/{job_id}": {"get": status_sync_op, "post": status_sync_op},
        "/v2/{endpoint}/stream/{job_id}": {"get": stream_op, "post": stream_op},
        "/v2/{endpoint}/cancel/{job_id}": {"post": _op("cancel a job", "client", [_ENDPOINT, _JOB], job_state)},
        "/v2/{endpoint}/retry/{job_id}": {
            "post": _op(
                "run a failed, timed-out or cancelled job again",
                "client",
                [_ENDPOINT, _JOB],
                job_state,
                extra={"409": _response("the job changed state meanwhile", _ERROR)},
            )
        },
        "/v2/{endpoint}/purge-queue": {
            "post": _op(
                "cancel every queued job",
                "client",
                [_ENDPOINT],
                _response("removed", {"type": "object", "properties": {"removed": {"type": "integer"}}}),
            )
        },
        "/v2/{endpoint}/health": {
            "get": _op("job counts and workers", "client", [_ENDPOINT], _response("counts", _ref("Health")))
        },
        "/v2/{endpoint}/job-take/{worker_id}": {
            "get": _op(
                "long-poll for one job",
                "worker",
                [*worker, _param("job_in_progress", "query", {"enum": ["0", "1"]}), _param("gpu", "query")],
                _response("a job", _ref("WorkerJob")),
                extra=_NO_WORK,
            )
        },
        "/v2/{endpoint}/job-take-batch/{worker_id}": {
            "get": _op(
                "long-poll for up to batch_size jobs",
                "worker",
                [
                    *worker,
                    _param("batch_size", "query", {"type": "integer"}),
                    _param("job_in_progress", "query", {"enum": ["0", "1"]}),
                ],
                _response("jobs", {"type": "array", "items": _ref("WorkerJob")}),
                extra=_NO_WORK,
            )
        },
        "/v2/{endpoint}/job-done/{worker_id}/{job_id}": {
            "post": _op(
                "a job's result (or a progress update)",
                "worker",
                [*worker, _JOB, _param("isStream", "query")],
                ok,
                _ref("JobResult"),
            )
        },
        "/v2/{endpoint}/job-stream/{worker_id}/{job_id}": {
            "post": _op("stream items of a running job", "worker", [*worker, _JOB, _param("isStream", "query")], ok, {})
        },
        "/v2/{endpoint}/job-stop/{worker_id}": {
            "get": _op(
                "long-poll for jobs to stop",
                "worker",
                worker,
                _response(
                    "jobs to stop",
                    {"type": "object", "properties": {"jobsToStop": {"type": "array", "items": {"type": "string"}}}},
                ),
                extra=_NO_WORK,
            )
        },
        "/v2/{endpoint}/ping/{worker_id}": {
            "get": _op(
                "heartbeat with the jobs in progress",
                "worker",
                [*worker, _param("job_id", "query", description="comma-separated job ids")],
                ok,
            )
        },
        "/v1/status": {
            "get": _op(
                "endpoints, workers, queues (skiff status)", "admin", [], _response("status", {"type": "object"})
            )
        },
        "/v1/apply": {
            "post": _op(
                "make the endpoint set exactly this (skiff apply)",
                "admin",
                [],
                _response("what changed", {"type": "object"}),
                {
                    "type": "object",
                    "required": ["endpoints"],
                    "properties": {"endpoints": {"type": "array", "items": {"type": "object"}}},
                },
            )
        },
        "/v2/{endpoint}/openai/v1/chat/completions": {
            "post": openai_op("OpenAI chat completion, served by the endpoint's worker", {"type": "object"})
        },
        "/v2/{endpoint}/openai/v1/completions": {
            "post": openai_op("OpenAI completion, served by the endpoint's worker", {"type": "object"})
        },
        "/v2/{endpoint}/openai/v1/models": {"get": openai_op("the models the endpoint's worker serves", None)},
        "/v1/keys": {
            "get": _op(
                "client keys (skiff keys list)",
                "admin",
                [],
                _response(
                    "keys", {"type": "object", "properties": {"keys": {"type": "array", "items": _ref("KeyRecord")}}}
                ),
            ),
            "post": _op(
                "create a client key (skiff keys create); the key is answered once",
                "admin",
                [],
                _response(
                    "the new key and its record",
                    {"allOf": [_ref("KeyRecord"), {"properties": {"key": {"type": "string"}}}]},
                ),
                _ref("KeyRequest"),
            ),
        },
        "/v1/keys/{key_id}": {
            "delete": _op(
                "revoke a client key (skiff keys revoke)",
                "admin",
                [_param("key_id", description="the key's id")],
                key_record,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics of this replica",
                "meta",
                [],
                {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}},
            )
        },
        "/console": {
            "get": _op("the web console's page (no data in it)", "console", [], _html("the page"), keyed=False)
        },
        "/console/{asset}": {
            "get": _op(
                "the console's script and style sheet",
                "console",
                [_param("asset", description="file name")],
                {"description": "the asset"},
                keyed=False,
                extra={"404": _response("no such asset", _ERROR)},
            )
        },
        "/v1/console/endpoints": {
            "get": _op("the console's endpoints view", "console", [], _response("endpoints", {"type": "object"}))
        },
        "/v1/console/endpoints/{endpoint}": {
            "get": _op(
                "the console's view of one endpoint", "console", [_ENDPOINT], _response("endpoint", {"type": "object"})
            )
        },
        "/v1/console/jobs/{endpoint}/{job_id}": {
            "get": _op(
                "the console's view of one job", "console", [_ENDPOINT, _JOB], _response("job", {"type": "object"})
            )
        },
        "/lb/{endpoint}": {m: {**lb_op, "parameters": [_ENDPOINT]} for m in lb_methods},
        "/lb/{endpoint}/{path}": {
            m: {
                **lb_op,
                "parameters": [_ENDPOINT, _param("path", description="the rest of the path, slashes included")],
            }
            for m in lb_methods
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Skiff gateway",
            "version": __version__,
            "description": "Runpod-compatible client API (/v2), worker API (the runpod SDK's worker loop), "
            'admin (/v1) and load-balancer proxy (/lb). Every error is JSON: {"error": message}.',
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Bearer <key>` or the bare key, as Runpod accepts",
                }
            },
            "schemas": _SCHEMAS,
        },
    }


_STATUS = {"enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]}
_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Liveness": {"type": "object", "properties": {"status": {"const": "ok"}, "version": {"type": "string"}}},
    "RunRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"description": "anything JSON; the handler's job['input']"},
            "webhook": {"type": "string", "format": "uri", "description": "http(s) URL POSTed the final status"},
            "policy": {
                "type": "object",
                "properties": {
                    "executionTimeout": {"type": "integer", "exclusiveMinimum": 0, "description": "ms"},
                    "ttl": {"type": "integer", "exclusiveMinimum": 0, "description": "ms"},
                    "lowPriority": {"type": "boolean"},
                },
            },
        },
    },
    "JobState": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": _STATUS},
    },
    "Job": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": _STATUS,
            "delayTime": {"type": "integer"},
            "executionTime": {"type": "integer"},
            "workerId": {"type": "string"},
            "retries": {"type": "integer"},
            "output": {},
            "error": {},
        },
    },
    "Stream": {
        "type": "object",
        "required": ["id", "status", "stream"],
        "properties": {"id": {"type": "string"}, "status": _STATUS, "stream": {"type": "array"}, "error": {}},
    },
    "Health": {
        "type": "object",
        "properties": {
            "jobs": {"type": "object"},
            "workers": {"type": "object"},
            "coldStartMs": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "last": {"type": ["integer", "null"]},
                    "p50": {"type": ["integer", "null"]},
                    "max": {"type": ["integer", "null"]},
                    "parts": {
                        "type": "object",
                        "description": "The last worker's cold start in parts (milliseconds; null where not seen)",
                        "properties": {
                            "placement": {"type": ["integer", "null"]},
                            "pull": {"type": ["integer", "null"]},
                            "startToTake": {"type": ["integer", "null"]},
                        },
                    },
                },
            },
            "webhooks": {"type": "object"},
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "properties": {"message": {"type": "string"}, "type": {}, "param": {}, "code": {}},
            }
        },
    },
    "KeyRequest": {
        "type": "object",
        "required": ["scope"],
        "properties": {
            "scope": {"enum": ["read", "write"]},
            "endpoints": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "name": {"type": "string", "maxLength": 200},
        },
    },
    "KeyRecord": {"type": "object", "properties": {"id": {"type": "string"}, "scope": {"enum": ["read", "write"]}}},
    "WorkerJob": {"type": "object", "required": ["id", "input"], "properties": {"id": {"type": "string"}, "input": {}}},
    "JobResult": {
        "type": "object",
        "properties": {"output": {}, "error": {}, "status": {"type": "string"}, "stopPod": {"type": "boolean"}},
    },
}

DOCUMENT: dict[str, Any] = _build()
