"""The Consul session lock against the Consul double."""

from __future__ import annotations

import asyncio

from skiff_core.leader import LeaderLock
from skiff_core.leader.consul import ConsulLeaderLock
from tests.support.doubles.consul import ConsulDouble


async def test_one_leader_and_takeover_on_release() -> None:
    with ConsulDouble() as consul:
        first = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=0, wait="5s")
        second = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=0, wait="5s")
        assert isinstance(first, LeaderLock)
        await asyncio.wait_for(first.acquire(), 5)
        assert first.is_held()
        contender = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.3)
        assert not contender.done() and not second.is_held()
        assert consul.kv["skiff/controller/leader"]["Session"] == first.session_id
        await first.release()
        assert first.session_id is None and first.session_id not in consul.sessions
        await asyncio.wait_for(contender, 5)
        assert second.is_held() and consul.kv["skiff/controller/leader"]["Session"] == second.session_id
        await second.close()
        await first.close()


async def test_expired_session_loses_leadership_and_lock_delay_holds_others_back() -> None:
    with ConsulDouble() as consul:
        lock = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=1, wait="5s")
        await lock.acquire()
        session = lock.session_id
        assert session is not None
        consul.expire_session(session)  # as if renewals stopped reaching Consul for a whole TTL
        # The renewer finds the session gone (404) on its next round and gives leadership up.
        lock._ttl_s = 1  # make the next renewal come quickly
        other = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=0, wait="1s", retry_s=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(other.acquire(), 10)
        assert loop.time() - started >= 0.8  # the 1 s lock delay of the invalidated session
        assert other.is_held()
        for _ in range(100):  # the old holder notices at its next renewal (<= ttl/3)
            if not lock.is_held():
                break
            await asyncio.sleep(0.1)
        assert not lock.is_held()
        await other.close()
        await lock.close()


async def test_renewals_keep_the_session_alive() -> None:
    with ConsulDouble() as consul:
        lock = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=0)
        await lock.acquire()
        lock._ttl_s = 1  # renew every 1/3 s from the next round
        session = lock.session_id
        await asyncio.sleep(4)
        assert lock.is_held() and session in consul.sessions
        await lock.close()
        assert session not in consul.sessions and "Session" not in consul.kv["skiff/controller/leader"]
