"""API keys. One client key; worker keys derived from it per endpoint, so a worker's key is valid
for its own endpoint only and nothing has to be stored or distributed besides the client key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

WORKER_KEY_PREFIX = "skw_"


def generate_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


def load_or_create_key(state_dir: Path) -> tuple[str, bool]:
    """The client key kept in <state_dir>/api-key (mode 0600); (key, created_now)."""
    path = state_dir / "api-key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key, False
    state_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key, True


@dataclass(frozen=True)
class KeyRing:
    client_key: str

    def worker_key(self, endpoint: str) -> str:
        digest = hmac.new(self.client_key.encode(), f"worker:{endpoint}".encode(), hashlib.sha256)
        return f"{WORKER_KEY_PREFIX}{endpoint}_{digest.hexdigest()[:40]}"

    def is_client(self, presented: str | None) -> bool:
        return presented is not None and _same(presented, self.client_key)

    def is_worker_for(self, presented: str | None, endpoint: str) -> bool:
        return presented is not None and _same(presented, self.worker_key(endpoint))

    @staticmethod
    def looks_like_worker_key(presented: str | None) -> bool:
        return presented is not None and presented.startswith(WORKER_KEY_PREFIX)


def _same(presented: str, expected: str) -> bool:
    """Constant-time comparison of any two strings: `hmac.compare_digest` refuses str with
    non-ASCII characters (a header byte such as 0xe9, an endpoint name such as "é") with a
    TypeError, which would answer 500 to a request that holds no valid key."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def presented_key(authorization: str | None) -> str | None:
    """Runpod accepts `Authorization: Bearer <key>` and the bare key; so do we."""
    if not authorization:
        return None
    value = authorization.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None
