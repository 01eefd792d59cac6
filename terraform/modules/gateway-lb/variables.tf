variable "name" {
  description = "Name prefix for the load balancer and its security group."
  type        = string
}

variable "internal" {
  description = "true for an internal load balancer (how workers reach the gateway), false for an internet-facing one (how clients do)."
  type        = bool
}

variable "vpc_id" {
  description = "VPC of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the load balancer: public subnets when internet-facing, private ones when internal."
  type        = list(string)
}

variable "allowed_cidrs" {
  description = "CIDR blocks allowed to reach the listener (the gateway checks API keys itself; narrow this for private deployments)."
  type        = list(string)
}

variable "enable_https" {
  description = "Serve HTTPS on 443 with certificate_arn (HTTP on 80 then only redirects); false serves plain HTTP on 80: acceptable for the internal worker listener, not for the public one. A separate switch because it must be known at plan time, which certificate_arn is not when the certificate is created in the same configuration."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener; required when enable_https is true, must be null otherwise."
  type        = string
  default     = null
}

variable "gateway_port" {
  description = "Port the gateway listens on on the system nodes (SKIFF_PORT in nomad/gateway.nomad.hcl)."
  type        = number
  default     = 8000
}

variable "idle_timeout_seconds" {
  description = "Connection idle timeout; must exceed the longest /runsync wait and job-take long poll (SKIFF_RUNSYNC_WAIT_S, default 90 s)."
  type        = number
  default     = 120
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
