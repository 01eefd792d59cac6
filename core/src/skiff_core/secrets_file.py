"""Endpoint secrets on one machine: `<state_dir>/secrets.json`, `{endpoint: {NAME: value}}`,
readable by its owner only (mode 0600). `skiff secrets` writes it; the local orchestrator reads it
when it starts a worker. In a cluster the same secrets are Nomad Variables
(`skiff_core.nomad.render.secrets_variable`), never this file.

Values never reach a log line: errors name the endpoint and the secret, not what it holds.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

FILE_NAME = "secrets.json"
MODE = 0o600


class SecretsFileError(ValueError):
    """The secrets file cannot be used; the message says why (never a value)."""


def secrets_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def read_secrets(state_dir: Path) -> dict[str, dict[str, str]]:
    path = secrets_path(state_dir)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    # As ssh does with a private key: a file others may read is not trusted with secrets.
    if stat.S_IMODE(mode) & 0o077:
        raise SecretsFileError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SecretsFileError(f"{path} cannot be read as JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict) or not all(
        isinstance(items, dict) and all(isinstance(v, str) for v in items.values()) for items in data.values()
    ):
        raise SecretsFileError(f'{path} must map endpoints to {{"NAME": "value"}} objects')
    return data


def write_secrets(state_dir: Path, secrets: dict[str, dict[str, str]]) -> None:
    """Replace the file atomically; created 0600 before anything is written into it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".secrets-", suffix=".json")
    try:
        os.fchmod(fd, MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({k: v for k, v in sorted(secrets.items()) if v}, handle, indent=2, sort_keys=True)
        os.replace(tmp, secrets_path(state_dir))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def secret_env(state_dir: Path, endpoint: str, names: list[str], environ: dict[str, str]) -> dict[str, str]:
    """The values of an endpoint's `secrets`: from the file, else from `environ` (the
    environment `skiff up` runs in). Raises SecretsFileError naming those found in neither."""
    stored = read_secrets(state_dir).get(endpoint, {}) if names else {}
    values: dict[str, str] = {}
    missing = []
    for name in names:
        if name in stored:
            values[name] = stored[name]
        elif name in environ:
            values[name] = environ[name]
        else:
            missing.append(name)
    if missing:
        raise SecretsFileError(
            f"endpoint {endpoint!r}: secret {', '.join(missing)} not set: `skiff secrets set {endpoint} "
            f"{missing[0]}`, or export it where skiff up runs"
        )
    return values
