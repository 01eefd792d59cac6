output "nomad_addr" {
  description = "NOMAD_ADDR (internal load balancer, HTTPS; reachable from operator_cidrs). Also set NOMAD_CACERT and NOMAD_TLS_SERVER_NAME=server.global.nomad."
  value       = module.servers.nomad_addr
}

output "consul_addr" {
  description = "CONSUL_HTTP_ADDR (internal load balancer, HTTPS; reachable from operator_cidrs). Also set CONSUL_CACERT and CONSUL_TLS_SERVER_NAME=server.<datacenter>.consul."
  value       = module.servers.consul_addr
}

output "gateway_url" {
  description = "Public base URL of the Skiff gateway (Runpod-compatible /v2/{endpoint}/... API)."
  value       = module.gateway_public.url
}

output "gateway_internal_url" {
  description = "Gateway URL workers use inside the VPC (SKIFF_PUBLIC_URL)."
  value       = module.gateway_internal.url
}

output "bootstrap_secrets_path" {
  description = "SSM Parameter Store path of the generated gossip keys, CA, and Nomad/Consul management tokens."
  value       = module.iam.ssm_parameter_prefix
}

output "redis_url_secret_arn" {
  description = "Secrets Manager secret holding SKIFF_REDIS_URL (copy it into the gateway's and controller's Nomad Variables)."
  value       = module.redis.url_secret_arn
}

output "task_role_arns" {
  description = "IAM role per Skiff job (aws_role_arn in each job's Nomad Variables)."
  value       = module.iam.task_role_arns
}

output "skiff_config" {
  description = "Non-secret SKIFF_* settings for the gateway and controller Nomad Variables."
  value = {
    SKIFF_QUEUE             = "sqs"
    SKIFF_STORE             = "redis"
    SKIFF_PAYLOADS          = "s3"
    SKIFF_ORCHESTRATOR      = "nomad"
    SKIFF_DISCOVERY         = "consul"
    SKIFF_AWS_REGION        = var.region
    SKIFF_SQS_QUEUE_PREFIX  = module.queues.queue_prefix
    SKIFF_S3_BUCKET         = module.payloads.bucket_name
    SKIFF_S3_PREFIX         = module.payloads.prefix
    SKIFF_PUBLIC_URL        = module.gateway_internal.url
    SKIFF_NOMAD_DATACENTERS = jsonencode([module.servers.datacenter])
    SKIFF_NOMAD_NODE_POOL   = module.gpu_pool.node_pool
  }
}
