endpoint "typo" {
  command = ["python", "worker.py"]

  scaling {
    max_worker = 2
  }

  gpus = 1
}
