output "security_group_id" {
  description = "Security group of this client pool (grant it access to Redis and other services)."
  value       = aws_security_group.this.id
}

output "autoscaling_group_name" {
  description = "Name of the pool's autoscaling group."
  value       = aws_autoscaling_group.this.name
}

output "node_pool" {
  description = "Nomad node pool the clients register in."
  value       = var.node_pool
}

output "model_cache_host_volume" {
  description = "Name of the Nomad host volume holding the shared model cache (mount it in worker jobs)."
  value       = "skiff-model-cache"
}
