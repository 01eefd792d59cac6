endpoint "Echo_1" {
  command = ["python", "worker.py"]
}

endpoint "a" "b" {
  command = ["python", "worker.py"]
}
