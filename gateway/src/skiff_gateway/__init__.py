"""The gateway: Runpod-compatible client API, worker API and load-balancing proxy (FastAPI)."""
