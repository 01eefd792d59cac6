# What the iam, nomad-servers and gateway-lb modules would provide.
resource "aws_kms_key" "cluster" {
  description         = "ci-clients fixture"
  enable_key_rotation = true
}

resource "aws_iam_role" "node" {
  name = "ci-clients-node"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

resource "aws_iam_instance_profile" "node" {
  name = "ci-clients-node"
  role = aws_iam_role.node.name
}

resource "aws_security_group" "servers" {
  name_prefix = "ci-clients-servers-"
  description = "ci-clients fixture: the Nomad servers"
  vpc_id      = data.aws_vpc.default.id
}

resource "aws_security_group" "lb" {
  name_prefix = "ci-clients-lb-"
  description = "ci-clients fixture: a load balancer in front of the gateway"
  vpc_id      = data.aws_vpc.default.id
}

resource "aws_lb_target_group" "gateway" {
  name_prefix = "cicl-"
  port        = 8000
  protocol    = "HTTP"
  vpc_id      = data.aws_vpc.default.id
}

module "clients" {
  source = "../../modules/gpu-clients"

  name                     = "ci-clients"
  node_pool                = "gpu"
  enable_gpu               = true
  vpc_id                   = data.aws_vpc.default.id
  subnet_ids               = slice(sort(data.aws_subnets.default.ids), 0, 2)
  instance_types           = ["g6.xlarge", "g5.xlarge"]
  use_spot                 = true
  min_size                 = 0
  max_size                 = 2
  desired_capacity         = 1
  instance_profile_name    = aws_iam_instance_profile.node.name
  kms_key_arn              = aws_kms_key.cluster.arn
  ssm_parameter_prefix     = "/skiff/ci-clients"
  server_security_group_id = aws_security_group.servers.id
  retry_join               = "provider=aws tag_key=skiff-server tag_value=ci-clients"
  datacenter               = "dc1"
  target_group_arns        = [aws_lb_target_group.gateway.arn]
  ingress_from_security_groups = {
    "gateway from load balancer" = { security_group_id = aws_security_group.lb.id, from_port = 8000, to_port = 8000 }
  }
}
