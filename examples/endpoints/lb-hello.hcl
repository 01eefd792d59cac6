# A load_balancer endpoint: requests to /lb/lb-hello/<path> are proxied (streamed both ways) to
# the least-loaded healthy worker's own HTTP server (examples/workers/lb_hello.py, FastAPI).
# Workers get PORT and PORT_HEALTH; one receives traffic only after GET /ping on PORT_HEALTH
# answers 200. No queue: with no worker running, a request starts one and waits for it.
endpoint "lb-hello" {
  type        = "load_balancer"
  image       = "ghcr.io/skiff-dev/lb-hello:0.1" # illustrative
  command     = ["python", "-u", "examples/workers/lb_hello.py"]
  health_path = "/ping"

  scaling {
    min_workers  = 0
    max_workers  = 2
    idle_timeout = "30s"
    scaler       = "request_count" # one worker per `target` requests in flight
    target       = 8
  }
}
