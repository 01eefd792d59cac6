"""The Consul session lock against the Consul double."""

from __future__ import annotations

import asyncio
import time

import httpx

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


async def test_takeover_after_a_lock_delay_is_a_timed_retry_not_a_long_poll() -> None:
    """Consul refuses acquisitions during an invalidated holder's lock delay and the key does not
    change when it ends: a waiter that long-polls the key then sits out its whole `wait`.
    api/lock.go retries on a timer instead; so must the lock (a long `wait` here shows it)."""
    key = "skiff/controller/leader"
    with ConsulDouble() as consul:
        holder = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=1, wait="60s")
        await holder.acquire()
        waiter = ConsulLeaderLock(consul.address, ttl_s=10, lock_delay_s=1, wait="60s", lock_retry_s=0.2)
        contender = asyncio.create_task(waiter.acquire())
        await asyncio.sleep(0.3)
        assert not contender.done()
        session = holder.session_id
        assert session is not None
        consul.expire_session(session)  # the leader died: its session is invalidated
        invalidated = consul.kv[key]["ModifyIndex"]
        await asyncio.wait_for(contender, 30)
        assert waiter.is_held()
        # After the invalidation the key only changed by the waiter's own acquire: no read may
        # have blocked on the invalidated index, waiting for a change that was not coming.
        waits = [q for m, p, q in consul.requests if m == "GET" and p == f"/v1/kv/{key}" and q.get("index")]
        assert all(int(q["index"]) < invalidated for q in waits), waits
        await waiter.close()
        await holder.close()


def test_the_double_expires_an_unrenewed_session_after_twice_its_ttl() -> None:
    """agent/consul/session_ttl.go createSessionTimer: ttl * SessionTTLMultiplier (2)."""
    with ConsulDouble() as consul:
        before = time.monotonic()
        resp = httpx.put(f"{consul.address}/v1/session/create", json={"Name": "x", "TTL": "10s"})
        sid = resp.json()["ID"]
        assert consul.session_deadline[sid] - before >= 20
        before = time.monotonic()
        httpx.put(f"{consul.address}/v1/session/renew/{sid}")
        assert 20 <= consul.session_deadline[sid] - before <= 21
