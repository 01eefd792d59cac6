"""A Consul double: health service listing, sessions and KV locks, with blocking queries.

Shapes:
- `GET /v1/health/service/:name?passing&index&wait` -> `[{"Node": {...}, "Service": {...},
  "Checks": [...]}]` with `X-Consul-Index`; `passing` keeps entries whose every check is
  passing. https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
- Blocking: the request waits until the index passes `index` or `wait` ends (default 5m, max 10m).
  https://developer.hashicorp.com/consul/api-docs/features/blocking
- `PUT /v1/session/create` body `{"Name","TTL","LockDelay","Behavior"}` -> `{"ID"}`;
  `PUT /v1/session/renew/:id` -> `[session]` or 404; `PUT /v1/session/destroy/:id` -> `true`.
  https://developer.hashicorp.com/consul/api-docs/session
- `GET /v1/kv/:key` -> `[{"LockIndex","Key","Flags","Value" (base64),"Session","CreateIndex",
  "ModifyIndex"}]` or 404; `PUT /v1/kv/:key?acquire=<session>|release=<session>` -> `true|false`;
  a session that is gone -> 500 "invalid session". https://developer.hashicorp.com/consul/api-docs/kv
- A session invalidated while holding a lock blocks re-acquisition for its lock delay
  (https://developer.hashicorp.com/consul/docs/automate/session).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


def _seconds(text: str | None, default: float) -> float:
    if not text:
        return default
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    return default


@dataclass
class _Instance:
    service: str
    id: str
    address: str
    port: int
    node: str
    node_address: str
    status: str
    index: int


class _Error(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ConsulDouble:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.index = 100
        self.instances: dict[str, _Instance] = {}
        self.service_index: dict[str, int] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.session_deadline: dict[str, float] = {}
        self.kv: dict[str, dict[str, Any]] = {}
        self.lock_delay_until: dict[str, float] = {}
        self.health_queries: list[dict[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._reaper = threading.Thread(target=self._expire_sessions, daemon=True)
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ConsulDouble:
        self._thread.start()
        self._reaper.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ConsulDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bump(self) -> int:
        self.index += 1
        self.lock.notify_all()
        return self.index

    # --- what Nomad's service registration and Consul's checks would do ------------------
    def register(
        self,
        service: str,
        instance_id: str,
        port: int,
        *,
        address: str = "",
        node_address: str = "127.0.0.1",
        status: str = "passing",
    ) -> None:
        with self.lock:
            index = self._bump()
            self.instances[instance_id] = _Instance(
                service, instance_id, address, port, "node-1", node_address, status, index
            )
            self.service_index[service] = index

    def set_status(self, instance_id: str, status: str) -> None:
        with self.lock:
            inst = self.instances[instance_id]
            inst.status = status
            inst.index = self._bump()
            self.service_index[inst.service] = inst.index

    def deregister(self, instance_id: str) -> None:
        with self.lock:
            inst = self.instances.pop(instance_id)
            self.service_index[inst.service] = self._bump()

    def expire_session(self, session_id: str) -> None:
        with self.lock:
            self._invalidate(session_id)

    # --- state ----------------------------------------------------------------------------
    def _health_entry(self, inst: _Instance) -> dict[str, Any]:
        node = {
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": inst.node,
            "Address": inst.node_address,
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": inst.node_address, "wan": inst.node_address},
            "Meta": {},
            "CreateIndex": 5,
            "ModifyIndex": 5,
        }
        service = {
            "ID": inst.id,
            "Service": inst.service,
            "Tags": ["skiff"],
            "Address": inst.address,
            "Meta": {},
            "Port": inst.port,
            "Weights": {"Passing": 10, "Warning": 1},
            "EnableTagOverride": False,
            "CreateIndex": inst.index,
            "ModifyIndex": inst.index,
        }
        checks = [
            {
                "Node": inst.node,
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Type": "",
                "CreateIndex": 5,
                "ModifyIndex": 5,
            },
            {
                "Node": inst.node,
                "CheckID": f"_nomad-check-{inst.id}",
                "Name": "service health",
                "Status": inst.status,
                "Notes": "",
                "Output": f"HTTP GET: {inst.status}",
                "ServiceID": inst.id,
                "ServiceName": inst.service,
                "ServiceTags": ["skiff"],
                "Type": "http",
                "CreateIndex": inst.index,
                "ModifyIndex": inst.index,
            },
        ]
        return {"Node": node, "Service": service, "Checks": checks}

    def _invalidate(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        self.session_deadline.pop(session_id, None)
        if session is None:
            return
        for key, entry in self.kv.items():
            if entry.get("Session") == session_id:
                entry.pop("Session")
                entry["ModifyIndex"] = self._bump()
                self.lock_delay_until[key] = time.monotonic() + _seconds(session["LockDelay"], 15.0)
        self._bump()

    def _expire_sessions(self) -> None:
        while not self._stop.wait(0.1):
            with self.lock:
                now = time.monotonic()
                for sid, deadline in list(self.session_deadline.items()):
                    if deadline <= now:
                        self._invalidate(sid)

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[Any, int, int]:
        """Returns (payload, status, index for X-Consul-Index)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:3] == ["v1", "health", "service"] and len(parts) == 4:
            name = parts[3]
            passing = "passing" in query and query["passing"].lower() not in ("false", "0")
            entries = [
                self._health_entry(i)
                for i in self.instances.values()
                if i.service == name and (not passing or i.status == "passing")
            ]
            return entries, 200, self.service_index.get(name, 1)
        if parts[:3] == ["v1", "session", "create"] and method == "PUT":
            data = json.loads(body) if body.strip() else {}
            sid = str(uuid.uuid4())
            ttl = data.get("TTL") or data.get("ttl") or ""
            session: dict[str, Any] = {
                "ID": sid,
                "Name": data.get("Name") or data.get("name") or "",
                "Node": "node-1",
                "LockDelay": data.get("LockDelay") or data.get("lockdelay") or "15s",
                "Behavior": data.get("Behavior") or data.get("behavior") or "release",
                "TTL": ttl,
                "NodeChecks": ["serfHealth"],
                "ServiceChecks": None,
                "CreateIndex": self._bump(),
                "ModifyIndex": self.index,
            }
            self.sessions[sid] = session
            if ttl:
                self.session_deadline[sid] = time.monotonic() + _seconds(ttl, 15.0)
            return {"ID": sid}, 200, self.index
        if parts[:3] == ["v1", "session", "renew"] and method == "PUT":
            sid = parts[3]
            found = self.sessions.get(sid)
            if found is None:
                raise _Error(404, f"Session id '{sid}' not found")
            if found["TTL"]:
                self.session_deadline[sid] = time.monotonic() + _seconds(found["TTL"], 15.0)
            return [found], 200, self.index
        if parts[:3] == ["v1", "session", "destroy"] and method == "PUT":
            self._invalidate(parts[3])
            return True, 200, self.index
        if parts[:2] == ["v1", "kv"] and len(parts) >= 3:
            key = "/".join(parts[2:])
            entry = self.kv.get(key)
            if method == "GET":
                if entry is None:
                    raise _Error(404, "")
                return [entry], 200, entry["ModifyIndex"]
            if method == "PUT":
                return self._kv_put(key, entry, query, body), 200, self.index
        raise _Error(404, f"unknown path {path}")

    def _kv_put(self, key: str, entry: dict[str, Any] | None, query: dict[str, str], body: bytes) -> bool:
        value = base64.b64encode(body).decode() if body else None
        if "acquire" in query:
            sid = query["acquire"]
            if sid not in self.sessions:
                raise _Error(500, f'invalid session "{sid}"')
            if entry is not None and entry.get("Session") not in (None, sid):
                return False
            if (entry is None or "Session" not in entry) and self.lock_delay_until.get(key, 0) > time.monotonic():
                return False
            index = self._bump()
            if entry is None:
                entry = {"LockIndex": 0, "Key": key, "Flags": 0, "CreateIndex": index}
                self.kv[key] = entry
            if entry.get("Session") != sid:
                entry["LockIndex"] += 1
            entry.update(Session=sid, Value=value, ModifyIndex=index)
            return True
        if "release" in query:
            sid = query["release"]
            if entry is None or entry.get("Session") != sid:
                return False
            entry.pop("Session")
            entry.update(Value=value, ModifyIndex=self._bump())
            return True
        index = self._bump()
        if entry is None:
            entry = {"LockIndex": 0, "Key": key, "Flags": 0, "CreateIndex": index}
            self.kv[key] = entry
        entry.update(Value=value, ModifyIndex=index)
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if url.path.startswith("/v1/health/"):
                    double.health_queries.append(query)
                index = 0
                try:
                    with double.lock:
                        payload, status, index = double.route(method, url.path, query, body)
                        if method == "GET" and query.get("index"):
                            wanted = int(query["index"])
                            deadline = time.monotonic() + min(_seconds(query.get("wait"), 300.0), 600.0)
                            while index <= wanted and time.monotonic() < deadline:
                                double.lock.wait(deadline - time.monotonic())
                                try:
                                    payload, status, index = double.route(method, url.path, query, body)
                                except _Error:
                                    index = double.index
                            payload, status, index = double.route(method, url.path, query, body)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                except _Error as err:
                    data = err.text.encode()
                    self.send_response(err.status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    index = index or double.index
                self.send_header("X-Consul-Index", str(index))
                self.send_header("X-Consul-Knownleader", "true")
                self.send_header("X-Consul-Lastcontact", "0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler
