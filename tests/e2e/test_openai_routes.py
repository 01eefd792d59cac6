"""The official `openai` client against a queue endpoint's OpenAI-compatible routes
(/v2/{endpoint}/openai/v1), with only `base_url` changed, served by a worker written with the
official runpod SDK in runpod-workers/worker-vllm's shape (tests/workers/runpod_openai.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.support.stack import SkiffProcess, endpoint_hcl

MODEL = "skiff-echo-model"


@pytest.fixture(scope="module")
def llm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkiffProcess]:
    root = tmp_path_factory.mktemp("openai")
    endpoints = root / "endpoints"
    endpoints.mkdir()
    (endpoints / "llm.hcl").write_text(
        endpoint_hcl("llm", "tests/workers/runpod_openai.py", scaling={"min_workers": 1, "max_workers": 1})
    )
    stack = SkiffProcess(endpoints, root / "state").start()
    try:
        stack.wait_ready_workers("llm")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def client(llm_stack: SkiffProcess) -> openai.OpenAI:
    # The only change an OpenAI user makes; no retries, so a failure shows as itself.
    return openai.OpenAI(base_url=f"{llm_stack.url}/v2/llm/openai/v1", api_key=llm_stack.key, max_retries=0)


def test_chat_completion(client: openai.OpenAI, llm_stack: SkiffProcess) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    # The request was an ordinary job, visible through /status with worker-vllm's input shape.
    job_id = raw.headers["x-skiff-job-id"]
    with llm_stack.client() as http:
        job = http.get(f"/v2/llm/status/{job_id}").json()
    assert job["status"] == "COMPLETED"
    assert job["output"][0]["choices"][0]["message"]["content"] == "echo: hello there"


def test_completion(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt="once upon")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "echo: once upon"


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]


def test_streamed_chunks_arrive_as_the_worker_yields_them(client: openai.OpenAI, tmp_path: Path) -> None:
    """The worker yields its first chunk, then waits until the test has received it (a gate
    file) before it yields the rest: a gateway that held chunks back until the end would leave
    the worker waiting and the answer would carry its complaint."""
    gate = tmp_path / "first-chunk-arrived"
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "to be or not"}],
        stream=True,
        extra_body={"gate": str(gate)},
    )
    pieces: list[str] = []
    finish = None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if not gate.exists():
            gate.touch()  # the first chunk is here while the worker still waits on the gate
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == "echo: to be or not"
    assert finish == "stop"


def test_streamed_completion(client: openai.OpenAI) -> None:
    text = "".join(c.choices[0].text for c in client.completions.create(model=MODEL, prompt="a b c", stream=True))
    assert text == "echo: a b c"


def test_worker_error_is_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "The model `missing` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "hi"}], stream=True)


def test_key_and_body_are_checked(llm_stack: SkiffProcess) -> None:
    wrong = openai.OpenAI(base_url=f"{llm_stack.url}/v2/llm/openai/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with llm_stack.client() as http:
        bad = http.post("/v2/llm/openai/v1/chat/completions", content=b"[1, 2]")
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "request body must be a JSON object"
        unknown = http.get("/v2/nope/openai/v1/models")
        assert unknown.status_code == 404 and "not found" in unknown.json()["error"]["message"]
        # Paths no route serves, and a wrong method, still answer in OpenAI's shape under /openai/.
        for method, path, status in (
            ("POST", "/v2/%2F/openai/v1/chat/completions", 404),
            ("POST", "/v2/llm/openai/v1/embeddings", 404),
            ("DELETE", "/v2/llm/openai/v1/models", 405),
        ):
            answer = http.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert answer.status_code == status, (path, answer.text)
            error = answer.json()["error"]
            assert isinstance(error["message"], str) and error["type"] == "invalid_request_error", (path, error)


def test_client_that_leaves_mid_stream_cancels_the_job(llm_stack: SkiffProcess, tmp_path: Path) -> None:
    gate = tmp_path / "never"  # the worker waits after its first chunk: the job is still running
    with llm_stack.client() as http:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "a b"}], "stream": True, "gate": str(gate)}
        with http.stream("POST", "/v2/llm/openai/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            job_id = response.headers["x-skiff-job-id"]
            first = next(response.iter_text())
            assert first.startswith("data: ")
        _eventually(lambda: http.get(f"/v2/llm/status/{job_id}").json()["status"] == "CANCELLED", "cancel")
    gate.touch()


def _eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout}s")
