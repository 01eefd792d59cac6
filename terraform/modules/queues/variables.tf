variable "name" {
  description = "Name prefix for the IAM policies."
  type        = string
}

variable "queue_prefix" {
  description = "Prefix of every SQS queue Skiff creates (SKIFF_SQS_QUEUE_PREFIX); IAM is scoped to queues whose names start with it."
  type        = string
  default     = "skiff-"

  validation {
    # SQS names: 1-80 of [A-Za-z0-9_-]; a prefix this short keeps room for endpoint names.
    condition     = can(regex("^[A-Za-z0-9_-]{1,40}$", var.queue_prefix))
    error_message = "queue_prefix must be 1-40 characters of letters, digits, '-' or '_'."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
