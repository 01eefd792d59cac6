"""Entry point of the `skiff` console script. Each command lives in its own module under skiff_cli."""

from __future__ import annotations

import faulthandler
import signal
import sys

_MISSING_SERVER = (
    "skiff: the command line needs the server extras. Install them with:\n    pip install 'skiff[server]'\n"
)


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr (the log): how to see where a
    # stuck gateway or controller is, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        from skiff_cli.app import app
    except ImportError as exc:  # typer / fastapi absent: the SDK-only install
        sys.stderr.write(_MISSING_SERVER + f"(missing: {exc.name})\n")
        raise SystemExit(2) from exc
    app()


if __name__ == "__main__":
    main()
