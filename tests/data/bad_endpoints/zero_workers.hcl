endpoint "zero" {
  type    = "queue"
  image   = "ghcr.io/acme/zero:1"
  command = ["python", "worker.py"]

  scaling {
    max_workers = 0
  }
}
