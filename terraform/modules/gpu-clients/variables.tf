variable "name" {
  description = "Cluster name; prefixes resources."
  type        = string
}

variable "node_pool" {
  description = "Nomad node pool of these clients: \"gpu\" for endpoint workers (SKIFF_NOMAD_NODE_POOL), \"system\" for the gateway and controller."
  type        = string
  default     = "gpu"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.node_pool))
    error_message = "node_pool must be a short lowercase name."
  }
}

variable "enable_gpu" {
  description = "Install the NVIDIA driver, container toolkit and Nomad's nomad-device-nvidia plugin. false makes a CPU pool (for the gateway and controller) from the same module."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC the clients run in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the clients."
  type        = list(string)
}

variable "instance_types" {
  description = "Instance types the autoscaling group may launch, in order of preference (for example [\"g6e.xlarge\", \"g5.xlarge\", \"g6.xlarge\"]); more types mean better spot availability."
  type        = list(string)
  default     = ["g6.xlarge", "g5.xlarge", "g4dn.xlarge"]

  validation {
    condition     = length(var.instance_types) >= 1
    error_message = "instance_types needs at least one instance type."
  }
}

variable "use_spot" {
  description = "Run instances above on_demand_base_capacity on spot (up to ~70% cheaper, may be reclaimed with 2 minutes' notice; Skiff redelivers interrupted jobs)."
  type        = bool
  default     = false
}

variable "on_demand_base_capacity" {
  description = "Instances that are always on-demand, whatever use_spot says."
  type        = number
  default     = 0
}

variable "min_size" {
  description = "Minimum number of instances (0 lets an idle GPU pool cost nothing)."
  type        = number
  default     = 0
}

variable "max_size" {
  description = "Maximum number of instances."
  type        = number
  default     = 4
}

variable "desired_capacity" {
  description = "Initial number of instances; later changes are left to an operator or a cluster autoscaler (ignored after creation)."
  type        = number
  default     = 1
}

variable "ami_id" {
  description = "AMI for the clients; null uses the latest Ubuntu 22.04 LTS image from Canonical (the user data is written for it)."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume (Docker images of GPU workers are large)."
  type        = number
  default     = 150
}

variable "model_cache_volume_size_gb" {
  description = "Size of the encrypted gp3 volume mounted at /opt/skiff/model-cache and exposed as the Nomad host volume \"skiff-model-cache\"; 0 keeps the cache on the root volume."
  type        = number
  default     = 200
}

variable "instance_profile_name" {
  description = "Instance profile for these clients (the iam module's \"gpu\" or \"system\" profile)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the EBS volumes (the cluster key from the iam module)."
  type        = string
}

variable "ssm_parameter_prefix" {
  description = "SSM path of the cluster's bootstrap secrets (the iam module's ssm_parameter_prefix)."
  type        = string
}

variable "server_security_group_id" {
  description = "Security group of the Nomad/Consul servers; this module adds the client-to-server rules to it."
  type        = string
}

variable "retry_join" {
  description = "Cloud auto-join string for the servers (the nomad-servers module's retry_join output)."
  type        = string
}

variable "datacenter" {
  description = "Nomad and Consul datacenter of the servers."
  type        = string
}

variable "nomad_version" {
  description = "Nomad package version from the HashiCorp apt repository (keep equal to the servers')."
  type        = string
  default     = "1.9.7"
}

variable "consul_version" {
  description = "Consul package version from the HashiCorp apt repository (keep equal to the servers')."
  type        = string
  default     = "1.20.5"
}

variable "nvidia_driver_branch" {
  description = "NVIDIA server driver branch installed from Ubuntu's archive (nvidia-driver-<branch>-server)."
  type        = string
  default     = "550"
}

variable "nomad_device_nvidia_version" {
  description = "Version of HashiCorp's nomad-device-nvidia plugin from releases.hashicorp.com."
  type        = string
  default     = "1.1.0"
}

variable "max_kill_timeout" {
  description = "Longest kill_timeout Nomad honours on these clients; must cover an endpoint's execution_timeout so a stopped worker can finish its job."
  type        = string
  default     = "3615s"
}

variable "target_group_arns" {
  description = "Load balancer target groups to register the instances in (the gateway's, for the system pool)."
  type        = list(string)
  default     = []
}

variable "ingress_from_security_groups" {
  description = "Extra TCP ingress to the clients: map of label to { security_group_id, from_port, to_port } (the gateway load balancer to port 8000; the gateway to load_balancer workers' dynamic ports)."
  type = map(object({
    security_group_id = string
    from_port         = number
    to_port           = number
  }))
  default = {}
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
