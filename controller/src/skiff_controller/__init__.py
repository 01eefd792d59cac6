"""The controller: reconciles declared endpoints with the orchestrator and autoscales them."""
