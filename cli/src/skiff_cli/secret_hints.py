"""Spotting a secret written in an endpoint's `env`, which lands in the Nomad job in clear text
(anyone who may read the job reads it). A hint for `skiff validate`, not a guarantee."""

from __future__ import annotations

import re

from skiff_core.spec import EndpointSpec

_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)", re.I
)
# Shapes of well-known credentials: Hugging Face, OpenAI-style, GitHub, AWS access key ids,
# Slack, and PEM private keys.
_SECRET_VALUE = re.compile(
    r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{20,}"
    r"|(AKIA|ASIA)[A-Z0-9]{16}|xox[abpr]-[A-Za-z0-9-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY-----.*)$",
    re.S,
)


def secret_like_env(spec: EndpointSpec) -> list[str]:
    """The `env` names of `spec` whose name or value looks like a secret."""
    return [
        name
        for name, value in spec.env.items()
        if value and ("${" not in value) and (_SECRET_NAME.search(name) or _SECRET_VALUE.match(value.strip()))
    ]
