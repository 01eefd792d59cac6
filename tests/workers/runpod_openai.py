"""Test worker (official runpod SDK) in runpod-workers/worker-vllm's shape, without a model.

Like worker-vllm's src/handler.py: an async generator reading {"openai_route", "openai_input"}
(a bare openai_route is a GET such as /v1/models); a streamed request yields raw SSE text
(`data: {...}\\n\\n`, ending with `data: [DONE]\\n\\n`), a plain one yields the OpenAI object once,
and a failure yields {"error": {"message", "type", "code"}}. Started with
return_aggregate_stream, as worker-vllm's main.py does.

The answer echoes the last message (or the prompt) word by word. Test hooks in the request body:
model "missing" answers vLLM's 404 error; "gate": <path> makes a streamed answer wait after its
first chunk until that file exists, so a test can prove the first chunk reached it first.
"""

import asyncio
import json
import os
import time

import runpod

MODEL = "skiff-echo-model"
GATE_WAIT_S = 60.0


def _error(message, kind="worker_error", code=None):
    return {"error": {"message": message, "type": kind, "code": code}}


def _reply(route, body):
    if route == "/v1/completions":
        return f"echo: {body.get('prompt', '')}"
    messages = body.get("messages") or [{}]
    return f"echo: {messages[-1].get('content', '')}"


def _chunk(route, created, text, finish=None):
    if route == "/v1/completions":
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        kind = "text_completion"
    else:
        choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        kind = "chat.completion.chunk"
    body = {"id": f"cmpl-{created}", "object": kind, "created": created, "model": MODEL, "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n"


def _whole(route, created, text):
    usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())}
    if route == "/v1/completions":
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        kind = "text_completion"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        kind = "chat.completion"
    return {
        "id": f"cmpl-{created}",
        "object": kind,
        "created": created,
        "model": MODEL,
        "choices": [choice],
        "usage": usage,
    }


async def handler(job):
    job_input = job.get("input") or {}
    route = job_input.get("openai_route")
    body = job_input.get("openai_input")
    if route == "/v1/models" and body is None:
        yield {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "skiff-tests"}]}
        return
    if route not in ("/v1/chat/completions", "/v1/completions") or not isinstance(body, dict):
        yield _error(f"unsupported input: {job_input!r}")
        return
    if body.get("model") == "missing":
        yield _error("The model `missing` does not exist.", "NotFoundError", 404)
        return
    created = int(time.time())
    text = _reply(route, body)
    if body.get("stream") is not True:
        yield _whole(route, created, text)
        return
    for i, word in enumerate(text.split()):
        yield _chunk(route, created, word if i == 0 else f" {word}")
        gate = body.get("gate")
        if i == 0 and gate:
            deadline = time.monotonic() + GATE_WAIT_S
            while not os.path.exists(gate):
                if time.monotonic() > deadline:
                    yield _chunk(route, created, " [the first chunk never reached the client]")
                    break
                await asyncio.sleep(0.05)
    yield _chunk(route, created, "", "stop")
    yield "data: [DONE]\n\n"


runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
