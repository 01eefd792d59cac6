"""Imports every command module so each registers on the shared typer app."""

from __future__ import annotations

import importlib

_COMMAND_MODULES = (
    "init",
    "secrets",
    "validate",
    "up",
    "gateway",
    "controller",
    "logs",
    "status",
    "apply",
    "render",
    "deploy",
    "keys",
)

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"skiff_cli.cmd_{_name}")
    except ModuleNotFoundError as exc:
        # A command whose module is not written yet is simply absent; anything else is a bug.
        if exc.name != f"skiff_cli.cmd_{_name}":
            raise
