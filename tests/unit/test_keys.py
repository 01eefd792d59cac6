"""Key checks take any string: a key or an endpoint name with non-ASCII characters is simply not
valid (constant-time comparison of bytes), never an exception. Worker keys derive from the worker
secret, not from any client key."""

from __future__ import annotations

import pytest

from skiff_core.keys import KeyRing, Scope, client_key_id, matches, new_client_key, presented_key


@pytest.mark.parametrize("presented", ["é", "caf\\xc3\\xa9", "\udce9", "sk_test\u00e9", ""])
def test_non_ascii_keys_are_refused_without_an_error(presented: str) -> None:
    ring = KeyRing("sk_test", "secret")
    assert not ring.is_admin(presented)
    assert not ring.is_worker_for(presented, "echo")
    assert client_key_id(presented) is None


def test_a_non_ascii_endpoint_name_is_compared_not_crashed() -> None:
    ring = KeyRing("sk_test", "secret")
    assert not ring.is_worker_for("skw_wrong", "é")
    assert ring.is_worker_for(ring.worker_key("é"), "é")


def test_the_right_keys_still_pass() -> None:
    ring = KeyRing("sk_tëst", "secret")
    assert ring.is_admin(presented_key("Bearer sk_tëst"))
    assert ring.is_worker_for(ring.worker_key("echo"), "echo")
    assert not ring.is_worker_for(ring.worker_key("echo"), "other")


def test_worker_keys_do_not_depend_on_the_admin_key() -> None:
    assert KeyRing("sk_a", "secret").worker_key("echo") == KeyRing("sk_b", "secret").worker_key("echo")
    assert KeyRing("sk_a", "secret").worker_key("echo") != KeyRing("sk_a", "other").worker_key("echo")
    with pytest.raises(RuntimeError, match="not loaded"):
        KeyRing("sk_a").worker_key("echo")


def test_created_keys_carry_their_id_and_match_only_their_hash() -> None:
    key, record = new_client_key(Scope.READ, ["echo"])
    assert client_key_id(key) == record.id
    assert matches(key, record) and key not in record.model_dump_json()
    assert not matches(key[:-1] + ("A" if key[-1] != "A" else "B"), record)
    assert client_key_id("skc_" + record.id) is None  # no secret part
