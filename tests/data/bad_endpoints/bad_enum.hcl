endpoint "batch" {
  type    = "batch"
  command = ["python", "worker.py"]

  scaling {
    scaler = "cpu"
  }
}
