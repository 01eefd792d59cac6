"""`skiff gateway` binds its own listening socket: connections accepted on it must have Nagle's
algorithm off, as uvicorn's own sockets do. With it on, a response written as headers then body
waits for the client's delayed ACK (40 ms on Linux) before the body leaves."""

from __future__ import annotations

import asyncio
import socket

from skiff_cli.cmd_gateway import _bind, _loop_factory


async def _accepted_nodelay() -> int:
    listener = _bind("127.0.0.1", 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    try:
        port = listener.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_connections_accepted_on_the_gateways_socket_have_nagle_off() -> None:
    assert asyncio.run(_accepted_nodelay()) != 0


def test_the_gateways_event_loop_keeps_nagle_off_too() -> None:
    factory = _loop_factory()
    assert factory is not None, "uvloop (installed with uvicorn[standard]) is missing"
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(_accepted_nodelay()) != 0
