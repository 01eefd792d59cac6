"""WebhookSender retries any failure, then gives up with a log line and a count (over loopback)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from skiff_gateway.webhooks import WebhookSender, webhook_problem
from tests.support.services import free_port


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hook", "http://127.0.0.1:{port}/\x05"])
async def test_a_webhook_that_never_lands_is_retried_then_given_up(url: str, caplog: pytest.LogCaptureFixture) -> None:
    # The second URL would be refused at submission; here it checks a send that raises something
    # other than a transport error still ends in the retries and the final line, not a dead task.
    sender = WebhookSender(attempts=3, first_delay=0.01, timeout=2)
    caplog.set_level(logging.WARNING, "skiff.webhooks")
    try:
        sender.send(url.format(port=free_port()), {"id": "job-1", "status": "COMPLETED"}, "echo")
        for _ in range(200):
            if sender.given_up["echo"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await sender.close()
    assert sender.given_up == {"echo": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("retrying" in line for line in lines) == 2, lines
    assert any("failed 3 times" in line and "giving up" in line for line in lines), lines


def test_webhook_problem_accepts_only_sendable_http_urls() -> None:
    assert webhook_problem("https://example.com:8443/a?b=c") is None
    for bad in ("http://[::1", "http://127.0.0.1:9/\x05", "mailto:x@y", "http://:80/", "http://h:65536/"):
        assert webhook_problem(bad) is not None, bad
