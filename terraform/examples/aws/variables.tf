variable "name" {
  description = "Cluster name: prefixes every resource, tags servers for auto-join and names the SSM secrets path /skiff/<name>."
  type        = string
  default     = "skiff"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to build the cluster in."
  type        = string
  default     = "us-east-1"
}

variable "vpc_cidr" {
  description = "CIDR block of the cluster's VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "gpu_instance_types" {
  description = "GPU instance types for the worker pool, most preferred first."
  type        = list(string)
  default     = ["g6.xlarge", "g5.xlarge", "g4dn.xlarge"]
}

variable "gpu_use_spot" {
  description = "Run GPU workers on spot capacity (cheaper; interrupted jobs are redelivered)."
  type        = bool
  default     = false
}

variable "gpu_min_size" {
  description = "Minimum GPU nodes (0 = no GPU cost when idle)."
  type        = number
  default     = 0
}

variable "gpu_max_size" {
  description = "Maximum GPU nodes."
  type        = number
  default     = 4
}

variable "gpu_desired_capacity" {
  description = "GPU nodes to start with."
  type        = number
  default     = 1
}

variable "system_instance_types" {
  description = "Instance types for the system pool running the gateway and controller."
  type        = list(string)
  default     = ["m7i.large", "m6i.large"]
}

variable "system_node_count" {
  description = "System nodes; one gateway replica runs per node, so this is the gateway's replica count (at least 2)."
  type        = number
  default     = 2

  validation {
    condition     = var.system_node_count >= 2
    error_message = "system_node_count must be at least 2 so the gateway survives a node loss."
  }
}

variable "server_instance_type" {
  description = "Instance type of the three Nomad+Consul servers."
  type        = string
  default     = "m6i.large"
}

variable "operator_cidrs" {
  description = "CIDR blocks (VPN, office, CI runners' egress) allowed to reach the Nomad and Consul APIs on the internal load balancer."
  type        = list(string)
  default     = []
}

variable "gateway_allowed_cidrs" {
  description = "CIDR blocks allowed to call the public gateway API."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "gateway_certificate_arn" {
  description = "ACM certificate for HTTPS on the public gateway; null serves plain HTTP (only for trials)."
  type        = string
  default     = null
}

variable "redis_node_type" {
  description = "ElastiCache node type of the job store."
  type        = string
  default     = "cache.t4g.small"
}

variable "payload_expiration_days" {
  description = "Days before payload objects expire from the S3 bucket."
  type        = number
  default     = 2
}

variable "sqs_queue_prefix" {
  description = "Prefix of the SQS queues the controller creates (SKIFF_SQS_QUEUE_PREFIX)."
  type        = string
  default     = "skiff-"
}

variable "ecr_repository_arns" {
  description = "ECR repositories holding worker images that the nodes may pull; empty for public registries only."
  type        = list(string)
  default     = []
}

variable "create_autoscaling_service_linked_role" {
  description = "Create AWSServiceRoleForAutoScaling, which the cluster KMS key's policy names: true only in an account that never had an Auto Scaling group (AWS creates the role with the first one, and creating it again fails)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
