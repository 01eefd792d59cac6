endpoint "limited" {
  command = ["python", "worker.py"]

  rate_limits {
    runn {
      requests = 5
    }

    cancel {
      requests   = -1
      concurrent = "many"
    }

    status = 5
  }
}
