variable "name" {
  description = "Cluster name; prefixes every role and scopes the SSM parameter path /skiff/<name>/."
  type        = string
}

variable "gateway_policy_arns" {
  description = "Managed policies for the gateway task role, keyed by a static label (for example { sqs = ..., payloads = ... })."
  type        = map(string)
  default     = {}
}

variable "controller_policy_arns" {
  description = "Managed policies for the controller task role, keyed by a static label."
  type        = map(string)
  default     = {}
}

variable "worker_policy_arns" {
  description = "Managed policies for the worker task role (for example read access to a model-weights bucket), keyed by a static label."
  type        = map(string)
  default     = {}
}

variable "ecr_repository_arns" {
  description = "ECR repositories the client nodes may pull images from; empty grants no ECR access (public registries need none)."
  type        = list(string)
  default     = []
}

variable "enable_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore so operators reach nodes through SSM Session Manager instead of SSH."
  type        = bool
  default     = true
}

variable "create_autoscaling_service_linked_role" {
  description = "Create the account's AWSServiceRoleForAutoScaling, which the cluster key's policy names. AWS creates it with an account's first Auto Scaling group and KMS refuses a policy naming a missing role, so set true only in an account that never had one (creating it where it exists fails)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
