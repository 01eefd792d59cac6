"""ConsulDiscovery against the Consul double: only passing instances, changes within one round."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from skiff_core.discovery.base import Discovery
from skiff_core.discovery.consul import ConsulDiscovery, parse_consul_addr
from tests.support.doubles.consul import ConsulDouble


class _Named(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def workers() -> Iterator[dict[str, int]]:
    servers = {}
    for name in ("a", "b"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[name] = srv
    yield {name: srv.server_address[1] for name, srv in servers.items()}
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def test_consul_addr_forms() -> None:
    assert parse_consul_addr("127.0.0.1:8500") == ("http", "127.0.0.1", 8500)
    assert parse_consul_addr("https://consul.example:8501") == ("https", "consul.example", 8501)


async def test_traffic_only_to_passing_and_critical_leaves_within_one_round(workers: dict[str, int]) -> None:
    with ConsulDouble() as consul:
        # Nomad registers each allocation's service; Service.Address empty for "b" -> Node.Address.
        consul.register("skiff-web", "_nomad-task-a", workers["a"], address="127.0.0.1")
        consul.register("skiff-web", "_nomad-task-b", workers["b"], address="", node_address="127.0.0.1")
        consul.register("skiff-web", "_nomad-task-c", 9, address="127.0.0.1", status="critical")
        consul.register("skiff-other", "_nomad-task-x", workers["a"], address="127.0.0.1")
        disco = ConsulDiscovery(consul.address, wait="20s")
        assert isinstance(disco, Discovery)
        healthy = await disco.healthy("web")
        assert sorted(i.id for i in healthy) == ["_nomad-task-a", "_nomad-task-b"]
        assert all(i.host == "127.0.0.1" for i in healthy)
        async with httpx.AsyncClient() as http:
            answers = {(await http.get(i.base_url + "/")).text for i in healthy}
        assert answers == {"a", "b"}
        assert any(q.get("passing") and q.get("index") for q in consul.health_queries), "blocking, passing-only"

        # "a" fails its check: the blocking query returns and "a" is gone, well before `wait`.
        waiter = asyncio.create_task(disco.wait_change("web", timeout=15))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        consul.set_status("_nomad-task-a", "critical")
        await waiter
        assert loop.time() - started < 10
        healthy = await disco.healthy("web")
        assert [i.id for i in healthy] == ["_nomad-task-b"]
        async with httpx.AsyncClient() as http:
            assert {(await http.get(i.base_url + "/")).text for i in healthy} == {"b"}

        consul.set_status("_nomad-task-a", "passing")
        await disco.wait_change("web", timeout=15)
        assert sorted(i.id for i in await disco.healthy("web")) == ["_nomad-task-a", "_nomad-task-b"]
        await disco.close()


async def test_unknown_service_is_empty_and_close_stops_watches() -> None:
    with ConsulDouble() as consul:
        disco = ConsulDiscovery(consul.address, wait="20s")
        assert await disco.healthy("nothing") == []
        await disco.wait_change("nothing", timeout=0.2)
        await disco.close()
