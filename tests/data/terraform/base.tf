# Shared by every fixture root of tests/e2e/test_terraform_apply.py: the test copies this file
# into each fixture directory (next to its main.tf), then adds a provider override that points
# the AWS provider at a local moto server. Nothing here ever reaches AWS.

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

# Modules that need a network get the default VPC and its subnets: the network module has its
# own root, and a fixture should create only what its module needs as inputs.
data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
}
