# What the iam module would provide: a KMS key and an instance profile.
resource "aws_kms_key" "cluster" {
  description         = "ci-servers fixture"
  enable_key_rotation = true
}

resource "aws_iam_role" "node" {
  name = "ci-servers-node"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_instance_profile" "node" {
  name = "ci-servers-node"
  role = aws_iam_role.node.name
}

module "servers" {
  source = "../../modules/nomad-servers"

  name                  = "ci-servers"
  vpc_id                = data.aws_vpc.default.id
  subnet_ids            = slice(sort(data.aws_subnets.default.ids), 0, 3)
  instance_profile_name = aws_iam_instance_profile.node.name
  kms_key_arn           = aws_kms_key.cluster.arn
  ssm_parameter_prefix  = "/skiff/ci-servers"
  api_allowed_cidrs     = ["10.8.0.0/16"]
}
