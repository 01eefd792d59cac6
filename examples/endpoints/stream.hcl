# The stream endpoint: a generator handler whose chunks are readable from /stream/{id} while the
# job runs; /status/{id} returns them all as a list once it is done (return_aggregate_stream).
endpoint "stream" {
  type    = "queue"
  image   = "ghcr.io/skiff-dev/stream-worker:0.1" # illustrative
  command = ["python", "-u", "examples/workers/stream.py"]

  resources {
    cpu_mhz   = 500
    memory_mb = 256
  }

  scaling {
    min_workers  = 0
    max_workers  = 2
    idle_timeout = "30s"
    scaler       = "request_count" # one worker per `target` queued or running jobs
    target       = 4
  }

  execution_timeout = "120s"
  job_ttl           = "1h"

  env = {
    STREAM_DEFAULT_CHUNKS = "5"
  }
}
