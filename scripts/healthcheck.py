"""The server image's HEALTHCHECK (copied into it by the root Dockerfile; standard library only).

One image runs either service, so this looks at the running `skiff` command to know what to ask:
- `skiff gateway` (and `skiff up`): GET /healthz on its --port / SKIFF_PORT (default 8000);
- `skiff controller --port N`: GET /healthz on N;
- `skiff controller` without --port serves nothing: healthy while it runs (a restart policy covers crashes).
A listening address of 0.0.0.0 or :: is asked on loopback. Exit status 0 is healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVICES = ("gateway", "controller", "up")


def skiff_argv() -> list[str] | None:
    """The arguments after `skiff` of the skiff process in this container (PID 1 first)."""
    candidates = [Path("/proc/1"), *sorted(p for p in Path("/proc").iterdir() if p.name.isdigit())]
    for proc in candidates:
        try:
            argv = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if os.path.basename(arg) == "skiff" and len(argv) > i + 1 and argv[i + 1] in SERVICES:
                return argv[i + 1 :]
    return None


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main() -> int:
    argv = skiff_argv()
    if argv is None:
        print("no `skiff gateway|controller|up` process in this container", file=sys.stderr)
        return 1
    port = option(argv, "--port")
    if argv[0] == "controller" and port is None:
        return 0
    port = port or os.environ.get("SKIFF_PORT") or "8000"
    host = option(argv, "--host") or os.environ.get("SKIFF_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            ok = response.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
