service "web" {
  command = ["python", "web.py"]
}

endpoint "fine" {
  command = ["python", "worker.py"]

  autoscale {
    max = 3
  }
}

region = "eu"
