"""Entry point of the `skiff` console script. Each command lives in its own module under skiff.cli."""

from __future__ import annotations

import sys

_MISSING_SERVER = (
    "skiff: the command line needs the server extras. Install them with:\n    pip install 'skiff[server]'\n"
)


def main() -> None:
    try:
        from skiff.cli.app import app
    except ImportError as exc:  # typer / fastapi absent: the SDK-only install
        sys.stderr.write(_MISSING_SERVER + f"(missing: {exc.name})\n")
        raise SystemExit(2) from exc
    app()


if __name__ == "__main__":
    main()
