endpoint "dynamic" {
  image   = var.image
  command = ["python", "${path.module}/worker.py"]
  max_retries = 1 + 2
}
