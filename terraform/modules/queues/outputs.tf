output "queue_prefix" {
  description = "Queue name prefix to pass to Skiff as SKIFF_SQS_QUEUE_PREFIX."
  value       = var.queue_prefix
}

output "queue_arn_pattern" {
  description = "ARN pattern every Skiff queue matches; what the policies are scoped to."
  value       = local.queue_arn_pattern
}

output "gateway_policy_arn" {
  description = "Managed policy for the gateway role (message data plane on Skiff queues)."
  value       = aws_iam_policy.gateway.arn
}

output "controller_policy_arn" {
  description = "Managed policy for the controller role (queue lifecycle on Skiff queues)."
  value       = aws_iam_policy.controller.arn
}

output "required_queue_attributes" {
  description = "Attributes the controller must set on every queue it creates (SSE on, long polling)."
  value = {
    SqsManagedSseEnabled          = "true"
    ReceiveMessageWaitTimeSeconds = "20"
  }
}
