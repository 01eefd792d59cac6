"""The worker project `skiff init` writes: a handler, its local test input, a Dockerfile on the
worker base image, an endpoint file and a README with the four steps (develop, test locally,
package, deploy).

Pure text: nothing here talks to a gateway or a registry. The handler follows Runpod's
conventions, so the same project runs on Runpod: `python handler.py` with no gateway in the
environment runs `test_input.json` once and exits (runpod's rp_local.py; Skiff's SDK does the same,
skiff/worker/local.py).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from skiff import __version__
from skiff_core.spec import EndpointType

# The official SDK's version Skiff is tested against (the lock's runpod pin).
RUNPOD_VERSION = "1.12.0"
WORKER_BASE = f"ghcr.io/skiff-dev/skiff-worker:{__version__}"
HANDLER = "handler.py"
TEST_INPUT = "test_input.json"


class Sdk(StrEnum):
    SKIFF = "skiff"
    RUNPOD = "runpod"


class ScaffoldExists(FileExistsError):
    """A file `skiff init` would write is already there: nothing was written."""


def project_files(name: str, sdk: Sdk, kind: EndpointType) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    lb = kind is EndpointType.LOAD_BALANCER
    handler = _LB_HANDLER if lb else (_RUNPOD_HANDLER if sdk is Sdk.RUNPOD else _SKIFF_HANDLER)
    return {
        HANDLER: handler.replace("@NAME@", name),
        TEST_INPUT: json.dumps({"input": {"name": "Skiff"}}, indent=2) + "\n",
        "Dockerfile": _dockerfile(name, sdk, lb),
        f"endpoints/{name}.hcl": _endpoint(name, lb),
        "README.md": _readme(name, sdk, lb),
    }


def write_project(directory: Path, name: str, sdk: Sdk, kind: EndpointType) -> list[Path]:
    """Write the project under `directory` (created if needed). Refuses, writing nothing, when
    any of its files already exists."""
    files = project_files(name, sdk, kind)
    clashes = [directory / rel for rel in files if (directory / rel).exists()]
    if clashes:
        raise ScaffoldExists(", ".join(str(p) for p in clashes))
    written = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x": a file created meanwhile is still not overwritten.
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written


_SKIFF_HANDLER = '''"""The @NAME@ worker, run by the Skiff SDK (`pip install skiff`).

Test it locally: `python handler.py` runs test_input.json once and exits (or pass one job:
`python handler.py --test_input '{"input": {"name": "you"}}'`). Under Skiff, the gateway's
address and key arrive in the environment and it takes jobs until it is stopped.
"""

import skiff.serverless


def handler(job):
    # Load models once, at import time (above), not here: each job pays only for its own work.
    name = job["input"].get("name", "world")
    return {"greeting": f"Hello, {name}!"}


if __name__ == "__main__":
    skiff.serverless.start({"handler": handler})
'''

_RUNPOD_HANDLER = '''"""The @NAME@ worker, run by Runpod's official SDK (`pip install runpod`): the same file runs
on Runpod and on Skiff.

Test it locally: `python handler.py` runs test_input.json once and exits (or pass one job:
`python handler.py --test_input '{"input": {"name": "you"}}'`). Under Skiff or Runpod, the
gateway's address and key arrive in the environment and it takes jobs until it is stopped.
"""

import runpod


def handler(job):
    # Load models once, at import time (above), not here: each job pays only for its own work.
    name = job["input"].get("name", "world")
    return {"greeting": f"Hello, {name}!"}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
'''

_LB_HANDLER = '''"""The @NAME@ worker: a load_balancer endpoint's worker is any HTTP server. This one needs only
the standard library.

Skiff (and Runpod) give it two ports: PORT for requests and PORT_HEALTH for the health check; it
gets traffic once GET /ping on PORT_HEALTH answers 200. `POST /lb/@NAME@/hello` on the gateway
arrives here as `POST /hello`.

Test it locally: `python handler.py` with no PORT set runs test_input.json's "input" through
`handle` once, prints the answer and exits.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handle(body):
    name = body.get("name", "world")
    return {"greeting": f"Hello, {name}!"}


class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ping":
            self.send_json(200, {"status": "healthy"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self.send_json(400, {"error": "the body is not JSON"})
            return
        if not isinstance(body, dict):
            self.send_json(400, {"error": "the body must be a JSON object"})
            return
        self.send_json(200, handle(body))

    def send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def main():
    if "PORT" not in os.environ:
        with open("test_input.json", encoding="utf-8") as file:
            print(json.dumps(handle(json.load(file)["input"])))
        return
    # 0.0.0.0 so the port is reachable from outside a container; HOST narrows it.
    host = os.environ.get("HOST", "0.0.0.0")
    port, health_port = int(os.environ["PORT"]), int(os.environ.get("PORT_HEALTH", os.environ["PORT"]))
    servers = [ThreadingHTTPServer((host, port), Api)]
    if health_port != port:
        servers.append(ThreadingHTTPServer((host, health_port), Api))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
'''


def _dockerfile(name: str, sdk: Sdk, lb: bool) -> str:
    lines = [
        f"# The {name} worker image: Skiff's worker base (Python and the Skiff SDK; sdk/Dockerfile in",
        "# Skiff's repository builds it, see its docs/images.md) plus handler.py.",
        "#",
        f"#   docker build -t ghcr.io/your-org/{name}-worker:0.1 .",
        f"#   docker run --rm ghcr.io/your-org/{name}-worker:0.1   # no gateway: runs test_input.json once",
        "#",
        "# Your handler's own requirements install as root into the base's venv (/opt/venv), then the",
        "# image drops back to the base's unprivileged user.",
        f"ARG WORKER_BASE={WORKER_BASE}",
        "FROM ${WORKER_BASE}",
    ]
    if sdk is Sdk.RUNPOD and not lb:
        lines += [
            "USER 0:0",
            f"RUN pip install --no-cache-dir runpod=={RUNPOD_VERSION}",
            "USER 10001:10001",
        ]
    lines += [
        f"COPY {HANDLER} {TEST_INPUT} /app/",
        f'CMD ["python", "-u", "{HANDLER}"]',
    ]
    return "\n".join(lines) + "\n"


def _endpoint(name: str, lb: bool) -> str:
    kind = "load_balancer" if lb else "queue"
    lines = [
        f"# The {name} endpoint. `skiff up --endpoints endpoints`, started in this project's directory,",
        "# runs `command` there as a local process; in a cluster, Nomad runs `image` (set it to where",
        "# you push the image: `skiff validate` checks the reference).",
        f'endpoint "{name}" {{',
        f'  type    = "{kind}"',
        f'  image   = "ghcr.io/your-org/{name}-worker:0.1"',
        f'  command = ["python", "-u", "{HANDLER}"]',
    ]
    if lb:
        lines.append('  health_path = "/ping"')
    lines += ["", "  scaling {", "    min_workers  = 0", "    max_workers  = 3"]
    if lb:
        lines += ['    idle_timeout = "30s"', '    scaler       = "request_count"', "    target       = 8"]
    else:
        lines += ['    idle_timeout = "5s"', '    scaler       = "queue_delay"', "    target       = 4"]
    lines += ["  }"]
    if not lb:
        lines += ["", '  execution_timeout = "600s"']
    lines += [
        "",
        "  # A model cache shared by the workers: $SKIFF_VOLUME_MODELS in the handler (/runpod-volume",
        "  # in a cluster, a directory under .skiff/volumes with `skiff up`).",
        '  # volume "models" {',
        '  #   source = "skiff-model-cache"',
        "  # }",
        "",
        f'  # secrets = ["HF_TOKEN"]   # values: `skiff secrets set {name} HF_TOKEN`; never put them in env',
    ]
    if not lb:
        lines.append("  # concurrency = 1            # the most jobs one worker holds at once")
    lines += [
        "",
        "  # A GPU worker: uncomment and name the models it may run on, best first.",
        "  # gpu {",
        "  #   count  = 1",
        '  #   models = ["NVIDIA L4", "NVIDIA A10G"]',
        "  # }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _readme(name: str, sdk: Sdk, lb: bool) -> str:
    if lb:
        test = "python handler.py        # no PORT set: runs test_input.json through handle() and prints the answer"
        call = (
            f"curl -s -H \"Authorization: Bearer $SKIFF_API_KEY\" -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"name": "you"}}\' http://127.0.0.1:8000/lb/{name}/hello'
        )
        what = "an HTTP server (standard library only) behind a load_balancer endpoint"
    else:
        test = "python handler.py        # runs test_input.json once and exits"
        call = (
            f"curl -s -H \"Authorization: Bearer $SKIFF_API_KEY\" -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"input": {{"name": "you"}}}}\' http://127.0.0.1:8000/v2/{name}/runsync'
        )
        what = f"a queue handler run by the {'official runpod' if sdk is Sdk.RUNPOD else 'Skiff'} SDK"
    install = "pip install runpod" if sdk is Sdk.RUNPOD and not lb else "pip install skiff"
    return f"""# {name}

A Skiff worker project ({what}), written by `skiff init`.

| file | what it is |
| --- | --- |
| `handler.py` | the worker |
| `test_input.json` | the job `python handler.py` runs when no gateway is in its environment |
| `Dockerfile` | the worker image: Skiff's worker base plus `handler.py` |
| `endpoints/{name}.hcl` | the endpoint: image, command, scaling, GPU |

## 1. Develop

Edit `handler.py`. `{install}` gives you the SDK locally.

## 2. Test locally

```bash
{test}
skiff up --endpoints endpoints   # from this directory: a gateway and a worker process on your machine
{call}
```

## 3. Package

```bash
docker build -t ghcr.io/your-org/{name}-worker:0.1 .
docker push ghcr.io/your-org/{name}-worker:0.1
```

Set the same reference as `image` in `endpoints/{name}.hcl`; `skiff validate endpoints` checks it.

## 4. Deploy

```bash
export NOMAD_ADDR=http://nomad.example.internal:4646
skiff deploy endpoints
skiff status
```

Skiff's docs/nomad-dev.md walks through this on `nomad agent -dev`.
"""
