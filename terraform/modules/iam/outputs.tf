output "instance_profile_names" {
  description = "Instance profile per node pool: server, system, gpu."
  value       = { for k, p in aws_iam_instance_profile.node : k => p.name }
}

output "node_role_arns" {
  description = "Node role ARN per node pool: server, system, gpu."
  value       = { for k, r in aws_iam_role.node : k => r.arn }
}

output "task_role_arns" {
  description = "Task role ARN for gateway, controller and worker (put in each job's Nomad Variables as aws_role_arn)."
  value       = { for k, r in aws_iam_role.task : k => r.arn }
}

output "cluster_kms_key_arn" {
  description = "KMS key encrypting the bootstrap secrets in SSM Parameter Store."
  value       = aws_kms_key.cluster.arn
}

output "ssm_parameter_prefix" {
  description = "SSM path holding the cluster's bootstrap secrets (server/ and client/ below it)."
  value       = "/skiff/${var.name}"
}
