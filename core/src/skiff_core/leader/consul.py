"""The controller's leader lock in a cluster: a Consul session holding a KV key.

Consul's recipe (https://developer.hashicorp.com/consul/docs/automate/application-leader-election
and https://developer.hashicorp.com/consul/api-docs/session, .../api-docs/kv):
1. `PUT /v1/session/create` `{"Name", "TTL": "15s", "LockDelay": "..s", "Behavior": "release"}`
   -> `{"ID"}`; the session dies unless renewed (`PUT /v1/session/renew/:id`, 404 once gone)
   within its TTL.
2. `PUT /v1/kv/<key>?acquire=<session>` -> `true` for the one session that gets the key.
3. The others block on `GET /v1/kv/<key>?index=N` while the key's `Session` field names a
   holder, and try to acquire once it is empty. After a holder's session is invalidated Consul
   refuses new acquisitions for the lock delay, so a stalled old leader has time to notice
   before another takes over. During it the key does not change, so a refused acquire on a free
   key is retried on a timer, not by a long poll that would sit out its whole `wait` (Consul's
   own api/lock.go Lock: "DefaultLockRetryTime"). Consul invalidates a session that is not
   renewed after twice its TTL (agent/consul/session_ttl.go, SessionTTLMultiplier).
4. `PUT /v1/kv/<key>?release=<session>` and `PUT /v1/session/destroy/:id` hand it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket

from consul.exceptions import NotFound

from skiff_core.discovery.consul import consul_client

log = logging.getLogger(__name__)


class ConsulLeaderLock:
    def __init__(
        self,
        addr: str = "http://127.0.0.1:8500",
        *,
        token: str | None = None,
        key: str = "skiff/controller/leader",
        ttl_s: int = 15,
        lock_delay_s: int = 5,
        wait: str = "15s",
        retry_s: float = 1.0,
        lock_retry_s: float = 1.0,
        ca_cert: str | None = None,
    ) -> None:
        if not 10 <= ttl_s <= 86400:
            raise ValueError("Consul session TTLs are between 10s and 86400s")
        self._consul = consul_client(addr, token, ca_cert)
        self._key = key
        self._ttl_s = ttl_s
        self._lock_delay_s = lock_delay_s
        self._wait = wait
        self._retry_s = retry_s
        # After a refused acquire on a free key. Consul's api/lock.go waits 5 s; shorter here so a
        # takeover follows the lock delay closely (a refused acquire costs one small write).
        self._lock_retry_s = lock_retry_s
        self._session: str | None = None
        self._held = False
        self._renewer: asyncio.Task[None] | None = None
        self._holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})

    @property
    def session_id(self) -> str | None:
        return self._session

    def is_held(self) -> bool:
        return self._held

    async def _new_session(self) -> str:
        session: str = await self._consul.session.create(
            name="skiff-controller", ttl=self._ttl_s, lock_delay=self._lock_delay_s, behavior="release"
        )
        return session

    async def acquire(self) -> None:
        index = None
        while True:
            try:
                if self._session is None:
                    self._session = await self._new_session()
                # Blocks only while someone holds the key (index is None otherwise).
                index, entry = await self._consul.kv.get(self._key, index=index, wait=self._wait)
                holder = (entry or {}).get("Session")
                if holder and holder != self._session:
                    continue  # held: wait for the key to change
                if await self._consul.kv.put(self._key, self._holder, acquire=self._session):
                    self._held = True
                    self._renewer = asyncio.create_task(self._renew(), name="consul-leader-renew")
                    return
                # Free but refused: the lock delay of an invalidated holder. The key will not
                # change when it ends, so retry on a timer (api/lock.go), reading afresh.
                index = None
                await asyncio.sleep(self._lock_retry_s)
            except asyncio.CancelledError:
                raise
            except NotFound:
                self._session = None  # our session expired while we waited
            except Exception as exc:
                # Consul answers 500 "invalid session" for a session that expired meanwhile;
                # a fresh one costs nothing (an orphan expires with its TTL).
                log.warning("consul leader lock: %s; retrying", exc)
                self._session = None
                await asyncio.sleep(self._retry_s)

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                await self._consul.session.renew(self._session)
            except NotFound:
                log.error("consul session %s expired: leadership lost", self._session)
                self._held = False
                self._session = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient: the TTL leaves room for two more tries
                log.warning("renewing consul session failed: %s", exc)

    async def release(self) -> None:
        self._held = False
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._consul.kv.put(self._key, self._holder, release=self._session)
            with contextlib.suppress(Exception):
                await self._consul.session.destroy(self._session)
            self._session = None

    def holder_pid(self) -> int | None:
        return None  # the session names a node; the holder string in the KV value says which

    async def close(self) -> None:
        await self.release()
        closing = self._consul.http.close()
        if inspect.isawaitable(closing):
            await closing
