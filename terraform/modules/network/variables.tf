variable "name" {
  description = "Name prefix for every resource (for example \"skiff-prod\")."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR block of the VPC; split into one public and one private subnet per availability zone."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0))
    error_message = "cidr_block must be a valid IPv4 CIDR block."
  }
}

variable "az_count" {
  description = "How many availability zones to spread subnets over (3 keeps a Nomad/Consul quorum across a zone loss)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6."
  }
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway instead of one per zone: cheaper, but a zone outage cuts egress for private subnets."
  type        = bool
  default     = true
}

variable "flow_logs_retention_days" {
  description = "Days to keep VPC flow logs in CloudWatch Logs; 0 disables flow logs."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
