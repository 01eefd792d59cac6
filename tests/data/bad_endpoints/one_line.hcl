# python-hcl2 accepts these; Terraform and Nomad do not.
endpoint "cramped" {
  command = ["python", "worker.py"]
  scaling { min_workers = 0  max_workers = 2 }
  image = "ghcr.io/acme/x:1" max_retries = 2
}
