# Two layers of identity:
#   node roles  (instance profiles) - what the Nomad/Consul agents need: cloud auto-join, the
#               cluster's bootstrap secrets in SSM, and permission to assume the task roles.
#   task roles  (gateway, controller, worker) - what Skiff's processes need, assumed from the node
#               role by the AWS SDK (profile with credential_source = Ec2InstanceMetadata).
# Gateway and controller run only on the "system" node pool, workers only on the "gpu" pool, and
# each task role trusts only the node role of its pool, so a worker container can never obtain
# queue or payload credentials.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  autoscaling_role_arn = (
    var.create_autoscaling_service_linked_role
    ? aws_iam_service_linked_role.autoscaling[0].arn
    : "arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
  )
  ssm_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/skiff/${var.name}"
  node_roles = {
    server = "Nomad and Consul servers"
    system = "Nomad clients running the Skiff gateway and controller"
    gpu    = "Nomad GPU clients running endpoint workers"
  }
  task_roles = {
    gateway    = { pool = "system", policies = var.gateway_policy_arns }
    controller = { pool = "system", policies = var.controller_policy_arns }
    worker     = { pool = "gpu", policies = var.worker_policy_arns }
  }
  task_policy_attachments = merge([
    for role, cfg in local.task_roles : {
      for label, arn in cfg.policies : "${role}/${label}" => { role = role, arn = arn }
    }
  ]...)
}

# Bootstrap secrets (gossip keys, CA, ACL bootstrap tokens) are generated on the first server at
# boot and stored as SecureString parameters encrypted with this key, so they never pass through
# Terraform state or user data.
#
# The same key encrypts the nodes' EBS volumes (the launch templates' kms_key_id), and instances
# are launched by the Auto Scaling groups, that is by the AWSServiceRoleForAutoScaling
# service-linked role, whose own permissions cover only AWS managed keys. AWS documents the two
# statements it needs on a customer managed key ("Required AWS KMS key policy for use with
# encrypted volumes"):
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html
#
# Written with jsonencode rather than an aws_iam_policy_document: in a key policy "Resource": "*"
# means this key (it cannot name its own ARN), and the first statement is the default key policy
# AWS gives a key without one (the account, through IAM policies, keeps control of the key).
resource "aws_kms_key" "cluster" {
  description             = "Skiff ${var.name}: Nomad/Consul bootstrap secrets in SSM and node volumes"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EnableIAMPolicies"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "AutoScalingUseOfTheKey"
        Effect    = "Allow"
        Principal = { AWS = local.autoscaling_role_arn }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
      },
      {
        Sid       = "AutoScalingGrantsForVolumes"
        Effect    = "Allow"
        Principal = { AWS = local.autoscaling_role_arn }
        Action    = "kms:CreateGrant"
        Resource  = "*"
        Condition = { Bool = { "kms:GrantIsForAWSResource" = "true" } }
      },
    ]
  })
  tags = var.tags
}

# KMS rejects a key policy naming a role that does not exist, and AWS creates
# AWSServiceRoleForAutoScaling only with an account's first Auto Scaling group.
resource "aws_iam_service_linked_role" "autoscaling" {
  count            = var.create_autoscaling_service_linked_role ? 1 : 0
  aws_service_name = "autoscaling.amazonaws.com"
  description      = "Default service-linked role used by EC2 Auto Scaling (created by Skiff ${var.name})"
}

resource "aws_kms_alias" "cluster" {
  name          = "alias/${var.name}-cluster"
  target_key_id = aws_kms_key.cluster.key_id
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  for_each           = local.node_roles
  name               = "${var.name}-node-${each.key}"
  description        = "Skiff ${var.name}: ${each.value}"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = var.tags
}

resource "aws_iam_instance_profile" "node" {
  for_each = local.node_roles
  name     = "${var.name}-node-${each.key}"
  role     = aws_iam_role.node[each.key].name
  tags     = var.tags
}

# Cloud auto-join (go-discover's aws provider) lists instances by tag. DescribeInstances has no
# resource-level permissions, so "*" is the narrowest possible scope.
data "aws_iam_policy_document" "auto_join" {
  statement {
    sid       = "CloudAutoJoin"
    actions   = ["ec2:DescribeInstances", "ec2:DescribeTags"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "auto_join" {
  for_each = local.node_roles
  name     = "cloud-auto-join"
  role     = aws_iam_role.node[each.key].id
  policy   = data.aws_iam_policy_document.auto_join.json
}

# Servers create the bootstrap secrets (first writer wins: PutParameter without --overwrite) and
# read all of them.
data "aws_iam_policy_document" "server_secrets" {
  statement {
    sid       = "BootstrapParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:PutParameter"]
    resources = ["${local.ssm_prefix}/*"]
  }
  statement {
    sid       = "BootstrapKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.cluster.arn]
  }
}

resource "aws_iam_role_policy" "server_secrets" {
  name   = "bootstrap-secrets"
  role   = aws_iam_role.node["server"].id
  policy = data.aws_iam_policy_document.server_secrets.json
}

# Clients only read the client-facing half: CA certificate, Consul gossip key, the shared Nomad
# client certificate and the Consul agent token. Never the CA key or the bootstrap tokens.
data "aws_iam_policy_document" "client_secrets" {
  statement {
    sid       = "ClientParameters"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = ["${local.ssm_prefix}/client/*"]
  }
  statement {
    sid       = "BootstrapKeyDecrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.cluster.arn]
  }
}

resource "aws_iam_role_policy" "client_secrets" {
  for_each = toset(["system", "gpu"])
  name     = "client-secrets"
  role     = aws_iam_role.node[each.key].id
  policy   = data.aws_iam_policy_document.client_secrets.json
}

data "aws_iam_policy_document" "ecr_pull" {
  count = length(var.ecr_repository_arns) > 0 ? 1 : 0

  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "EcrPull"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = var.ecr_repository_arns
  }
}

resource "aws_iam_role_policy" "ecr_pull" {
  for_each = length(var.ecr_repository_arns) > 0 ? toset(["system", "gpu"]) : toset([])
  name     = "ecr-pull"
  role     = aws_iam_role.node[each.key].id
  policy   = data.aws_iam_policy_document.ecr_pull[0].json
}

resource "aws_iam_role_policy_attachment" "session_manager" {
  for_each   = var.enable_session_manager ? local.node_roles : {}
  role       = aws_iam_role.node[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# Task roles: trust exactly one node role each.
data "aws_iam_policy_document" "task_assume" {
  for_each = local.task_roles

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.node[each.value.pool].arn]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each             = local.task_roles
  name                 = "${var.name}-task-${each.key}"
  description          = "Skiff ${var.name}: ${each.key} (assumed from the ${each.value.pool} node role)"
  assume_role_policy   = data.aws_iam_policy_document.task_assume[each.key].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "task" {
  for_each   = local.task_policy_attachments
  role       = aws_iam_role.task[each.value.role].name
  policy_arn = each.value.arn
}

# The node role side of the hand-off: each pool may assume only its own task roles.
data "aws_iam_policy_document" "assume_tasks" {
  for_each = toset(["system", "gpu"])

  statement {
    sid       = "AssumeTaskRoles"
    actions   = ["sts:AssumeRole"]
    resources = [for role, cfg in local.task_roles : aws_iam_role.task[role].arn if cfg.pool == each.key]
  }
}

resource "aws_iam_role_policy" "assume_tasks" {
  for_each = toset(["system", "gpu"])
  name     = "assume-task-roles"
  role     = aws_iam_role.node[each.key].id
  policy   = data.aws_iam_policy_document.assume_tasks[each.key].json
}
