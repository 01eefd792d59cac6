"""A load_balancer worker: any HTTP server works; this one is FastAPI.

Skiff (and Runpod) give the worker two ports: PORT for the API and PORT_HEALTH for the health
check. The gateway sends traffic only once GET /ping on PORT_HEALTH answers 200, and proxies
/lb/lb-hello/<path> to <path> here. /stream shows that responses are streamed as written.
"""

import asyncio
import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()
health = FastAPI()


class Greeting(BaseModel):
    name: str = "world"


@health.get("/ping")
async def ping() -> dict:
    return {"status": "healthy"}


@app.post("/hello")
async def hello(greeting: Greeting) -> dict:
    return {"message": f"Hello, {greeting.name}!", "worker": os.environ.get("RUNPOD_POD_ID")}


@app.get("/stream")
async def stream(words: int = 5) -> StreamingResponse:
    async def tokens():
        for i in range(words):
            yield f"token {i}\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(tokens(), media_type="text/plain")


async def main() -> None:
    port, health_port = int(os.environ.get("PORT", "5000")), int(os.environ.get("PORT_HEALTH", "5001"))
    servers = [uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))]
    if health_port != port:
        servers.append(uvicorn.Server(uvicorn.Config(health, host="127.0.0.1", port=health_port, log_level="warning")))
    else:
        app.get("/ping")(ping)
    await asyncio.gather(*(s.serve() for s in servers))


asyncio.run(main())
