# The echo endpoint: returns its input. Its worker uses the Skiff SDK (examples/workers/echo.py).
#
# `skiff up` runs `command` from the directory it was started in (the repository root), with its
# own interpreter standing in for "python". In a cluster, Nomad runs `image` with the docker driver.
# No `gpu` block: this endpoint runs on CPU.
endpoint "echo" {
  type    = "queue"
  image   = "ghcr.io/skiff-dev/echo-worker:0.1" # illustrative
  command = ["python", "-u", "examples/workers/echo.py"]

  scaling {
    min_workers  = 0
    max_workers  = 3
    idle_timeout = "5s"
    scaler       = "queue_delay" # add a worker while the oldest job has waited > target seconds
    target       = 4
  }

  execution_timeout = "600s"
  job_ttl           = "24h"
}
