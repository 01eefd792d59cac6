endpoint "slow" {
  command = ["python", "worker.py"]

  scaling {
    idle_timeout = "5 minutes"
  }

  execution_timeout = "0s"
  job_ttl           = ["24h"]
}
