"""The typer application; commands register themselves from their modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="skiff",
    help="Self-hosted serverless endpoints, Runpod-compatible. Start with `skiff up`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Imported for their side effect of adding commands to `app`.
from skiff_cli import commands  # noqa: E402,F401
