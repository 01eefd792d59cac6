terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }

  # State holds the Redis AUTH token: keep it in an encrypted, versioned, access-controlled
  # bucket. Partial configuration: `terraform init -backend-config=backend.hcl` (see
  # backend.hcl.example); `terraform init -backend=false` skips it for validation.
  backend "s3" {
    encrypt = true
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { "skiff-cluster" = var.name, ManagedBy = "terraform" })
  }
}
