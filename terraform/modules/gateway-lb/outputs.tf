output "url" {
  description = "Base URL of the gateway through this load balancer."
  value       = "${local.scheme}://${aws_lb.this.dns_name}"
}

output "dns_name" {
  description = "DNS name of the load balancer (point a CNAME or alias record at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 zone id of the load balancer, for alias records."
  value       = aws_lb.this.zone_id
}

output "security_group_id" {
  description = "Security group of the load balancer (allow it to the system nodes' gateway port)."
  value       = aws_security_group.this.id
}

output "target_group_arn" {
  description = "Target group the system pool's instances register in."
  value       = aws_lb_target_group.this.arn
}
