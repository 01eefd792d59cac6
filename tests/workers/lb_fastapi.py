"""Test load_balancer worker: a FastAPI app on $PORT, its health check on $PORT_HEALTH.

GET /whoami -> {"worker", "pid", "healthy"}; POST /echo -> the body and the request headers;
GET /stream?n=N -> N lines, the 2nd only after POST /release (so a test can tell a streamed
response from a buffered one and kill the worker mid-stream); GET /ping answers 503 until
READY_AFTER_S seconds after start, then 200.
"""

import asyncio
import os
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

STARTED = time.monotonic()
READY_AFTER_S = float(os.environ.get("READY_AFTER_S", "0"))
WORKER = os.environ.get("RUNPOD_POD_ID", "?")
released = asyncio.Event()

app = FastAPI()
health = FastAPI()


def is_healthy() -> bool:
    return time.monotonic() - STARTED >= READY_AFTER_S


@health.get("/ping")
async def ping() -> JSONResponse:
    return JSONResponse({"status": "healthy" if is_healthy() else "initializing"}, 200 if is_healthy() else 503)


@app.get("/whoami")
async def whoami() -> dict:
    return {"worker": WORKER, "pid": os.getpid(), "healthy": is_healthy()}


@app.post("/echo")
async def echo(request: Request) -> dict:
    body = await request.body()
    return {"worker": WORKER, "body": body.decode(), "headers": dict(request.headers), "query": str(request.url.query)}


@app.post("/release")
async def release() -> dict:
    released.set()
    return {"released": True}


@app.get("/stream")
async def stream(n: int = 3) -> StreamingResponse:
    released.clear()

    async def lines():
        yield f"line 0 from {WORKER}\n"
        await released.wait()
        for i in range(1, n):
            yield f"line {i} from {WORKER}\n"

    return StreamingResponse(lines(), media_type="text/plain", headers={"X-Worker-Pid": str(os.getpid())})


async def main() -> None:
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")),
        uvicorn.Server(
            uvicorn.Config(health, host="127.0.0.1", port=int(os.environ["PORT_HEALTH"]), log_level="warning")
        ),
    ]
    await asyncio.gather(*(s.serve() for s in servers))


asyncio.run(main())
