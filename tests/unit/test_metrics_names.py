"""The Grafana dashboard shipped in docs/ queries only series Skiff exports, and the two metric
registries (a gateway's, a controller's) render a valid exposition together, as `skiff up`
serves them, with no family named twice."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from skiff_controller.metrics import ControllerMetrics
from skiff_core.jobs import JobRecord, JobStatus
from skiff_gateway.metrics import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "skiff-dashboard.json"


def exported_names() -> set[str]:
    gateway = GatewayMetrics()
    controller = ControllerMetrics(lambda: True)
    gateway.extra.append(controller.registry)
    job = JobRecord(id="j", endpoint="ep", status=JobStatus.COMPLETED, created_at=1.0, started_at=2.0, completed_at=3.5)
    gateway.job_final(job)
    gateway.webhook("ep", "delivered")
    gateway.request("/v2/{endpoint}/run", "POST", 200, "ep", 0.001)
    controller.observed("ep", 1, 0, 0.5, ["idle"], 1, 1)
    controller.ready("ep", "w1", 3.0, ["w1"])
    controller.acted("ep", ["wake"], 1, {"scale_down": 1})
    names = set()
    families = list(text_string_to_metric_families(gateway.render().decode()))
    assert len({f.name for f in families}) == len(families), "a metric family is exported twice"
    for family in families:
        names |= {s.name for s in family.samples}
    return names


def test_the_dashboard_queries_only_exported_series() -> None:
    names = exported_names()
    doc = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in doc["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(skiff_[a-z_]+)\b", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= names, f"the dashboard queries series Skiff does not export: {sorted(queried - names)}"
    # The panels an operator needs, at least one each.
    titles = " ".join(p["title"].lower() for p in doc["panels"])
    for word in ("queue depth", "delay", "execution", "workers by state", "cold start", "scaling", "webhook", "http"):
        assert word in titles, word


def test_a_standby_controller_exports_no_shared_state_gauges() -> None:
    leading = False
    controller = ControllerMetrics(lambda: leading)
    controller.observed("ep", 3, 1, 2.0, ["idle", "running"], 2, 2)
    text = generate_latest(controller.registry).decode()
    assert not [line for line in text.splitlines() if line.startswith(("skiff_queue_depth{", "skiff_workers{"))]
    leading = True
    text = generate_latest(controller.registry).decode()
    assert 'skiff_queue_depth{endpoint="ep"} 3.0' in text
    assert 'skiff_workers{endpoint="ep",state="running"} 1.0' in text
