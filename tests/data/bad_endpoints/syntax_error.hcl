endpoint "broken" {
  type    = "queue"
  command = ["python", "worker.py"]
  image   =
}
