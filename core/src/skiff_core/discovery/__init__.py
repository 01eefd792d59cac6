"""Discovery of healthy load_balancer workers: the local orchestrator's table or Consul."""

from skiff_core.discovery.base import Discovery, Instance

__all__ = ["Discovery", "Instance"]
