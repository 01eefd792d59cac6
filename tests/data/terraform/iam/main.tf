# Task policies created in the same configuration (their ARNs are known only after apply), as the
# example root passes the queues' and payloads' policies.
data "aws_iam_policy_document" "worker" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::ci-iam-weights/*"]
  }
}

resource "aws_iam_policy" "worker" {
  name   = "ci-iam-worker-weights"
  policy = data.aws_iam_policy_document.worker.json
}

module "iam" {
  source = "../../modules/iam"

  name                = "ci-iam"
  worker_policy_arns  = { weights = aws_iam_policy.worker.arn }
  ecr_repository_arns = ["arn:aws:ecr:us-east-1:123456789012:repository/ci-iam/*"]
  # The path for an account that never had an Auto Scaling group.
  create_autoscaling_service_linked_role = true
}
