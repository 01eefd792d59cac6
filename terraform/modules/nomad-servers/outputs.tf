output "security_group_id" {
  description = "Security group of the servers (the gpu-clients module adds its client rules to it)."
  value       = aws_security_group.this.id
}

output "retry_join" {
  description = "Cloud auto-join string clients use to find the servers."
  value       = local.retry_join
}

output "api_dns_name" {
  description = "DNS name of the internal load balancer in front of the Nomad and Consul APIs."
  value       = aws_lb.api.dns_name
}

output "nomad_addr" {
  description = "NOMAD_ADDR for operators and CI (TLS; set NOMAD_TLS_SERVER_NAME=server.global.nomad and NOMAD_CACERT)."
  value       = "https://${aws_lb.api.dns_name}:4646"
}

output "consul_addr" {
  description = "CONSUL_HTTP_ADDR for operators (TLS; set CONSUL_TLS_SERVER_NAME=server.<datacenter>.consul and CONSUL_CACERT)."
  value       = "https://${aws_lb.api.dns_name}:8501"
}

output "datacenter" {
  description = "Nomad and Consul datacenter."
  value       = var.datacenter
}

output "autoscaling_group_name" {
  description = "Name of the servers' autoscaling group (start an instance refresh here to upgrade)."
  value       = aws_autoscaling_group.this.name
}
