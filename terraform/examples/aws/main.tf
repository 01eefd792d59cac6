# A complete Skiff cluster: `terraform apply`, then follow docs/cluster.md ("After apply").

module "network" {
  source = "../../modules/network"

  name       = var.name
  cidr_block = var.vpc_cidr
}

module "queues" {
  source = "../../modules/queues"

  name         = var.name
  queue_prefix = var.sqs_queue_prefix
}

module "payloads" {
  source = "../../modules/payloads"

  name            = var.name
  expiration_days = var.payload_expiration_days
}

module "iam" {
  source = "../../modules/iam"

  name = var.name
  gateway_policy_arns = {
    sqs      = module.queues.gateway_policy_arn
    payloads = module.payloads.read_write_policy_arn
  }
  controller_policy_arns = {
    sqs = module.queues.controller_policy_arn
  }
  ecr_repository_arns = var.ecr_repository_arns

  create_autoscaling_service_linked_role = var.create_autoscaling_service_linked_role
}

module "servers" {
  source = "../../modules/nomad-servers"

  name                  = var.name
  vpc_id                = module.network.vpc_id
  subnet_ids            = module.network.private_subnet_ids
  instance_type         = var.server_instance_type
  instance_profile_name = module.iam.instance_profile_names["server"]
  kms_key_arn           = module.iam.cluster_kms_key_arn
  ssm_parameter_prefix  = module.iam.ssm_parameter_prefix
  api_allowed_cidrs     = var.operator_cidrs
}

module "gateway_public" {
  source = "../../modules/gateway-lb"

  name            = var.name
  internal        = false
  vpc_id          = module.network.vpc_id
  subnet_ids      = module.network.public_subnet_ids
  allowed_cidrs   = var.gateway_allowed_cidrs
  enable_https    = var.gateway_certificate_arn != null
  certificate_arn = var.gateway_certificate_arn
}

module "gateway_internal" {
  source = "../../modules/gateway-lb"

  name          = var.name
  internal      = true
  vpc_id        = module.network.vpc_id
  subnet_ids    = module.network.private_subnet_ids
  allowed_cidrs = [module.network.vpc_cidr_block]
}

module "system_pool" {
  source = "../../modules/gpu-clients"

  name                       = var.name
  node_pool                  = "system"
  enable_gpu                 = false
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.private_subnet_ids
  instance_types             = var.system_instance_types
  min_size                   = var.system_node_count
  max_size                   = var.system_node_count + 1
  desired_capacity           = var.system_node_count
  root_volume_size_gb        = 40
  model_cache_volume_size_gb = 0
  instance_profile_name      = module.iam.instance_profile_names["system"]
  kms_key_arn                = module.iam.cluster_kms_key_arn
  ssm_parameter_prefix       = module.iam.ssm_parameter_prefix
  server_security_group_id   = module.servers.security_group_id
  retry_join                 = module.servers.retry_join
  datacenter                 = module.servers.datacenter
  target_group_arns          = [module.gateway_public.target_group_arn, module.gateway_internal.target_group_arn]
  ingress_from_security_groups = {
    "gateway from public load balancer"   = { security_group_id = module.gateway_public.security_group_id, from_port = 8000, to_port = 8000 }
    "gateway from internal load balancer" = { security_group_id = module.gateway_internal.security_group_id, from_port = 8000, to_port = 8000 }
  }
}

module "gpu_pool" {
  source = "../../modules/gpu-clients"

  name                     = var.name
  node_pool                = "gpu"
  enable_gpu               = true
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  instance_types           = var.gpu_instance_types
  use_spot                 = var.gpu_use_spot
  min_size                 = var.gpu_min_size
  max_size                 = var.gpu_max_size
  desired_capacity         = var.gpu_desired_capacity
  instance_profile_name    = module.iam.instance_profile_names["gpu"]
  kms_key_arn              = module.iam.cluster_kms_key_arn
  ssm_parameter_prefix     = module.iam.ssm_parameter_prefix
  server_security_group_id = module.servers.security_group_id
  retry_join               = module.servers.retry_join
  datacenter               = module.servers.datacenter
  ingress_from_security_groups = {
    # load_balancer endpoints: the gateway proxies to workers' HTTP ports, which Nomad assigns
    # from its default dynamic range.
    "gateway to load_balancer workers" = { security_group_id = module.system_pool.security_group_id, from_port = 20000, to_port = 32000 }
  }
}

module "redis" {
  source = "../../modules/redis"

  name                   = "${var.name}-jobs"
  vpc_id                 = module.network.vpc_id
  subnet_ids             = module.network.private_subnet_ids
  client_security_groups = { system = module.system_pool.security_group_id }
  node_type              = var.redis_node_type
}
