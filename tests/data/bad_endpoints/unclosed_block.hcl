endpoint "unclosed" {
  command = ["python", "worker.py"]

  scaling {
    max_workers = 2
  }
