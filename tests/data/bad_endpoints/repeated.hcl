endpoint "twice" {
  command = ["python", "worker.py"]
  command = ["python", "other.py"]

  scaling {
    max_workers = 2
  }

  scaling {
    max_workers = 3
  }
}
