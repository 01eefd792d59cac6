"""Key checks take any string: a key or an endpoint name with non-ASCII characters is simply not
valid (constant-time comparison of bytes), never an exception."""

from __future__ import annotations

import pytest

from skiff_core.keys import KeyRing, presented_key


@pytest.mark.parametrize("presented", ["é", "caf\\xc3\\xa9", "\udce9", "sk_test\u00e9", ""])
def test_non_ascii_keys_are_refused_without_an_error(presented: str) -> None:
    ring = KeyRing("sk_test")
    assert not ring.is_client(presented)
    assert not ring.is_worker_for(presented, "echo")


def test_a_non_ascii_endpoint_name_is_compared_not_crashed() -> None:
    ring = KeyRing("sk_test")
    assert not ring.is_worker_for("skw_wrong", "é")
    assert ring.is_worker_for(ring.worker_key("é"), "é")


def test_the_right_keys_still_pass() -> None:
    ring = KeyRing("sk_tëst")
    assert ring.is_client(presented_key("Bearer sk_tëst"))
    assert ring.is_worker_for(ring.worker_key("echo"), "echo")
