output "primary_endpoint_address" {
  description = "Hostname of the primary node (writes and pub/sub)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = var.port
}

output "security_group_id" {
  description = "Security group of the cache nodes."
  value       = aws_security_group.this.id
}

output "auth_token_secret_arn" {
  description = "Secrets Manager secret holding the AUTH token."
  value       = aws_secretsmanager_secret.auth.arn
}

output "url_secret_arn" {
  description = "Secrets Manager secret holding the complete SKIFF_REDIS_URL (rediss://:<token>@<host>:<port>/0)."
  value       = aws_secretsmanager_secret.url.arn
}
