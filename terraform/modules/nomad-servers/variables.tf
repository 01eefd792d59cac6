variable "name" {
  description = "Cluster name; tags the servers for cloud auto-join and scopes their bootstrap secrets."
  type        = string
}

variable "vpc_id" {
  description = "VPC the servers run in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the servers, ideally one per availability zone."
  type        = list(string)
}

variable "server_count" {
  description = "Number of Nomad+Consul servers; 3 tolerates one failure, 5 tolerates two."
  type        = number
  default     = 3

  validation {
    condition     = contains([3, 5], var.server_count)
    error_message = "server_count must be 3 or 5 (an odd quorum size)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the servers."
  type        = string
  default     = "m6i.large"
}

variable "ami_id" {
  description = "AMI for the servers; null uses the latest Ubuntu 22.04 LTS image from Canonical (the user data is written for it)."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume holding Raft data."
  type        = number
  default     = 50
}

variable "instance_profile_name" {
  description = "Instance profile for the servers (the iam module's \"server\" profile)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key used for the SSM SecureString bootstrap secrets and the EBS volumes."
  type        = string
}

variable "ssm_parameter_prefix" {
  description = "SSM path for bootstrap secrets, for example /skiff/<name> (the iam module's ssm_parameter_prefix)."
  type        = string
}

variable "nomad_version" {
  description = "Nomad package version from the HashiCorp apt repository."
  type        = string
  default     = "1.9.7"
}

variable "consul_version" {
  description = "Consul package version from the HashiCorp apt repository."
  type        = string
  default     = "1.20.5"
}

variable "datacenter" {
  description = "Nomad and Consul datacenter name (SKIFF_NOMAD_DATACENTERS must include it)."
  type        = string
  default     = "dc1"
}

variable "api_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the Nomad (4646) and Consul (8501) HTTPS APIs through the internal load balancer, for example a VPN range. Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0" && c != "::/0"])
    error_message = "api_allowed_cidrs must be valid CIDR blocks and must not open the APIs to the whole internet."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
