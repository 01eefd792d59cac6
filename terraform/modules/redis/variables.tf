variable "name" {
  description = "Name prefix; also the replication group id (at most 40 characters, lowercase)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,33}$", var.name))
    error_message = "name must start with a letter and be at most 34 lowercase letters, digits or hyphens."
  }
}

variable "vpc_id" {
  description = "VPC the cache lives in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache nodes (one per availability zone for Multi-AZ)."
  type        = list(string)
}

variable "client_security_groups" {
  description = "Security groups allowed to connect on the Redis port (the Nomad client nodes running the gateway and controller), keyed by a static label (for example { system = module.system_pool.security_group_id }): the labels, not the ids, must be known at plan time."
  type        = map(string)
}

variable "node_type" {
  description = "ElastiCache node type. The job store holds small records and short-lived results; cache.t4g.small is enough for most clusters."
  type        = string
  default     = "cache.t4g.small"
}

variable "num_cache_clusters" {
  description = "Nodes in the replication group: 1 is a single primary, 2 or more adds replicas and automatic Multi-AZ failover."
  type        = number
  default     = 2

  validation {
    condition     = var.num_cache_clusters >= 1 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters must be between 1 and 6."
  }
}

variable "engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "port" {
  description = "TCP port Redis listens on."
  type        = number
  default     = 6379
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for at-rest encryption and the auth-token secret; null uses AWS-managed keys."
  type        = string
  default     = null
}

variable "snapshot_retention_days" {
  description = "Days of automatic daily snapshots to keep; 0 disables them (job results are transient, so 1 is enough)."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
