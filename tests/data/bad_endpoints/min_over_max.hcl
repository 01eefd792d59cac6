endpoint "inverted" {
  command = ["python", "worker.py"]

  scaling {
    min_workers = 4
    max_workers = 2
  }
}
