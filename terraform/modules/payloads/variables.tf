variable "name" {
  description = "Name prefix; the bucket is named \"<name>-payloads-<account id>\" unless bucket_name is set."
  type        = string
}

variable "bucket_name" {
  description = "Explicit bucket name; null derives one from name and the account id (bucket names are global)."
  type        = string
  default     = null
}

variable "prefix" {
  description = "Key prefix Skiff writes payloads under (SKIFF_S3_PREFIX); lifecycle rules and IAM are scoped to it."
  type        = string
  default     = "payloads/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()/-]+/$", var.prefix))
    error_message = "prefix must be a non-empty S3 key prefix ending in '/'."
  }
}

variable "expiration_days" {
  description = "Days after which payload objects are deleted. Skiff keeps job results for hours at most, so a day is plenty."
  type        = number
  default     = 2

  validation {
    condition     = var.expiration_days >= 1
    error_message = "expiration_days must be at least 1."
  }
}

variable "create_kms_key" {
  description = "Create a dedicated KMS key (rotation on) for SSE-KMS; false uses kms_key_arn. A separate switch because it must be known at plan time, which kms_key_arn is not when the key is created in the same configuration."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS when create_kms_key is false; must be null otherwise."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (handy for test clusters, dangerous in production)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
