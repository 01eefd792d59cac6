# Queues are NOT created here. Endpoints come from git and change without a terraform apply, so
# the controller creates "<prefix><endpoint>" (and its dead-letter queue) when an endpoint is
# applied and deletes them when it is removed. Terraform's job is the IAM that makes that safe:
# every statement is scoped to arn:aws:sqs:<region>:<account>:<prefix>*.
# Action names: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsqs.html

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  queue_arn_pattern = "arn:${data.aws_partition.current.partition}:sqs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:${var.queue_prefix}*"
}

# Gateway: the data plane. Enqueue on /run, lease and settle on job-take/job-done, renew leases
# on ping, purge on /purge-queue, read depth for /health.
data "aws_iam_policy_document" "gateway" {
  statement {
    sid = "SkiffQueueDataPlane"
    actions = [
      "sqs:SendMessage",
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:PurgeQueue",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [local.queue_arn_pattern]
  }
}

# Controller: the control plane. Create/delete per-endpoint queues and their redrive policy,
# read depth and oldest-message age for autoscaling. No message access at all.
data "aws_iam_policy_document" "controller" {
  statement {
    sid = "SkiffQueueLifecycle"
    actions = [
      "sqs:CreateQueue",
      "sqs:DeleteQueue",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
      "sqs:SetQueueAttributes",
      "sqs:TagQueue",
      "sqs:ListQueueTags",
      "sqs:ListDeadLetterSourceQueues",
    ]
    resources = [local.queue_arn_pattern]
  }
}

resource "aws_iam_policy" "gateway" {
  name_prefix = "${var.name}-sqs-gateway-"
  description = "Skiff gateway: send/receive/delete messages on SQS queues named ${var.queue_prefix}*"
  policy      = data.aws_iam_policy_document.gateway.json
  tags        = var.tags
}

resource "aws_iam_policy" "controller" {
  name_prefix = "${var.name}-sqs-controller-"
  description = "Skiff controller: create, configure and delete SQS queues named ${var.queue_prefix}*"
  policy      = data.aws_iam_policy_document.controller.json
  tags        = var.tags
}
