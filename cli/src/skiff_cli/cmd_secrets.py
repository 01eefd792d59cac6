"""`skiff secrets set|list|rm ENDPOINT ...`: the values behind an endpoint's `secrets = [...]`.

Under `skiff up` (the default) they go to <state_dir>/secrets.json, mode 0600; with `--nomad`
(or SKIFF_ORCHESTRATOR=nomad) to the endpoint's Nomad Variable, which its job's template reads
(`skiff_core.nomad.render.secrets_template`). A value is read from standard input, or asked for
without echo on a terminal: never from the command line, where shell history and `ps` would
keep it. Values are never printed; `list` shows names only.

Exit status: 0 done, 1 a bad name or value, or nothing to remove, 2 Nomad refused or is unreachable.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from skiff_cli.app import app
from skiff_cli.options import StateDir, load_settings
from skiff_core.config import Settings
from skiff_core.nomad.client import NomadClient, NomadError
from skiff_core.nomad.render import secrets_variable
from skiff_core.secrets_file import SecretsFileError, read_secrets, write_secrets
from skiff_core.spec import ENV_NAME_RE, NAME_RE, RESERVED_ENV_PREFIXES

secrets_app = typer.Typer(
    help="Set, list and remove endpoint secrets (files under skiff up, Nomad Variables with --nomad).",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")

Endpoint = Annotated[str, typer.Argument(help="The endpoint whose `secrets` these are.")]
Name = Annotated[str, typer.Argument(help="The secret's name, as listed in `secrets` (an env variable name).")]
Nomad = Annotated[
    bool | None,
    typer.Option("--nomad/--local", help="Nomad Variables, or the local file [default: from SKIFF_ORCHESTRATOR]"),
]


def _fail(code: int, message: str) -> None:
    sys.stderr.write(f"skiff secrets: {message}\n")
    raise typer.Exit(code)


def _check(endpoint: str, name: str | None = None) -> None:
    if not NAME_RE.match(endpoint):
        _fail(1, f"{endpoint!r} is not an endpoint name")
    if name is not None and (not ENV_NAME_RE.match(name) or name.startswith(RESERVED_ENV_PREFIXES)):
        _fail(1, f"{name!r} is not a secret name: an environment variable name, not RUNPOD_*, SKIFF_* or NOMAD_*")


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value: str = typer.prompt(f"{name}", hide_input=True, err=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        _fail(1, f"{name}: empty value (pipe it in, or type it at the prompt)")
    if "\n" in value or "\r" in value or "\0" in value:
        # Nomad reads env templates back line by line (KEY=value).
        _fail(1, f"{name}: a value must be one line")
    return value


def _settings(nomad: bool | None, state_dir: StateDir) -> tuple[Settings, bool]:
    settings = load_settings(state_dir=state_dir)
    return settings, settings.orchestrator == "nomad" if nomad is None else nomad


def _client(settings: Settings) -> NomadClient:
    from skiff_core.orchestrator.nomad import nomad_client

    return nomad_client(settings)


async def _on_nomad(settings: Settings, action: str, endpoint: str, name: str = "", value: str = "") -> object:
    client = _client(settings)
    path = secrets_variable(endpoint)
    try:
        if action == "set":
            return await client.set_variable_item(path, name, value)
        if action == "rm":
            return await client.remove_variable_item(path, name)
        variable = await client.get_variable(path)
        return sorted(((variable or {}).get("Items") or {}).keys())
    finally:
        await client.close()


def _nomad(settings: Settings, action: str, endpoint: str, name: str = "", value: str = "") -> object:
    try:
        return asyncio.run(_on_nomad(settings, action, endpoint, name, value))
    except NomadError as exc:
        _fail(2, str(exc))
    raise AssertionError("unreachable")


def _local(settings: Settings) -> dict[str, dict[str, str]]:
    try:
        return read_secrets(settings.state_dir)
    except SecretsFileError as exc:
        _fail(1, str(exc))
    raise AssertionError("unreachable")


@secrets_app.command("set")
def set_secret(endpoint: Endpoint, name: Name, nomad: Nomad = None, state_dir: StateDir = None) -> None:
    """Set a secret; the value comes from standard input or a prompt that does not echo it."""
    _check(endpoint, name)
    settings, on_nomad = _settings(nomad, state_dir)
    value = _read_value(name)
    if on_nomad:
        _nomad(settings, "set", endpoint, name, value)
        where = f"Nomad Variable {secrets_variable(endpoint)}"
    else:
        secrets = _local(settings)
        secrets.setdefault(endpoint, {})[name] = value
        write_secrets(settings.state_dir, secrets)
        where = str(settings.state_dir / "secrets.json")
    typer.echo(f"{endpoint}: {name} set in {where} (workers started from now on get it)")


@secrets_app.command("list")
def list_secrets(endpoint: Endpoint, nomad: Nomad = None, state_dir: StateDir = None) -> None:
    """The names of an endpoint's secrets that are set (never their values)."""
    _check(endpoint)
    settings, on_nomad = _settings(nomad, state_dir)
    names = _nomad(settings, "list", endpoint) if on_nomad else sorted(_local(settings).get(endpoint, {}))
    assert isinstance(names, list)
    for name in names:
        typer.echo(name)


@secrets_app.command("rm")
def remove_secret(endpoint: Endpoint, name: Name, nomad: Nomad = None, state_dir: StateDir = None) -> None:
    """Remove a secret."""
    _check(endpoint, name)
    settings, on_nomad = _settings(nomad, state_dir)
    if on_nomad:
        removed = _nomad(settings, "rm", endpoint, name)
    else:
        secrets = _local(settings)
        removed = secrets.get(endpoint, {}).pop(name, None) is not None
        if removed:
            write_secrets(settings.state_dir, secrets)
    if not removed:
        _fail(1, f"{endpoint}: {name} is not set")
    typer.echo(f"{endpoint}: {name} removed")
