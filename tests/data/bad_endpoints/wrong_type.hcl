endpoint "types" {
  command = "python worker.py"

  scaling {
    max_workers = "many"
    target      = true
  }

  max_retries = true
  env = {
    DEBUG = 1
  }
}
