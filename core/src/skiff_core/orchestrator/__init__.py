"""Orchestrators start and stop workers: local subprocesses (embedded) or Nomad allocations (cluster)."""

from skiff_core.orchestrator.base import Orchestrator, WorkerInfo, WorkerPhase

__all__ = ["Orchestrator", "WorkerInfo", "WorkerPhase"]
