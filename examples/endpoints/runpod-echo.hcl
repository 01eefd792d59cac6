# The echo endpoint again, served by a worker written for Runpod with the official `runpod`
# package (examples/workers/runpod_echo.py): Skiff runs Runpod workers unchanged.
endpoint "runpod-echo" {
  type    = "queue"
  image   = "ghcr.io/skiff-dev/runpod-echo-worker:0.1" # illustrative
  command = ["python", "-u", "examples/workers/runpod_echo.py"]

  # GPUs are placed in cluster mode only: Nomad asks its NVIDIA device plugin for `count` GPUs
  # of one of these models. The embedded orchestrator (`skiff up`) ignores this block, so the
  # example still runs on a laptop.
  gpu {
    count  = 1
    models = ["NVIDIA L4", "NVIDIA A10G"]
  }

  resources {
    cpu_mhz   = 2000
    memory_mb = 4096
  }

  scaling {
    min_workers  = 0
    max_workers  = 3
    idle_timeout = "5s"
    scaler       = "queue_delay"
    target       = 4
  }

  execution_timeout = "600s"
  job_ttl           = "24h"
  max_retries       = 3
}
