data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_ami" "ubuntu" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]
  }
}

locals {
  # go-discover's aws provider (cloud auto-join) finds servers by this tag:
  # https://developer.hashicorp.com/consul/docs/install/cloud-auto-join#amazon-ec2
  join_tag_key   = "skiff-server"
  join_tag_value = var.name
  retry_join     = "provider=aws region=${data.aws_region.current.name} tag_key=${local.join_tag_key} tag_value=${local.join_tag_value}"
  ami_id         = var.ami_id != null ? var.ami_id : data.aws_ami.ubuntu[0].id
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-servers-"
  description = "Skiff Nomad and Consul servers"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-servers" })

  lifecycle {
    create_before_destroy = true
  }
}

# Server to server: Raft, Serf LAN/WAN and RPC for both Nomad and Consul. Client-side rules are
# added by the gpu-clients module, which knows the client security group.
resource "aws_vpc_security_group_ingress_rule" "self" {
  security_group_id            = aws_security_group.this.id
  description                  = "Nomad and Consul server-to-server traffic"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.this.id
}

# The internal NLB preserves client IPs, so the API rules name the source CIDRs themselves; the
# NLB's own health checks come from inside the VPC.
resource "aws_vpc_security_group_ingress_rule" "nomad_api" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.this.id
  description       = "Nomad HTTPS API from an allowed operator range"
  ip_protocol       = "tcp"
  from_port         = 4646
  to_port           = 4646
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "consul_api" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.this.id
  description       = "Consul HTTPS API from an allowed operator range"
  ip_protocol       = "tcp"
  from_port         = 8501
  to_port           = 8501
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "lb_health_nomad" {
  security_group_id = aws_security_group.this.id
  description       = "Load balancer health checks from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 4646
  to_port           = 4646
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_ingress_rule" "lb_health_consul" {
  security_group_id = aws_security_group.this.id
  description       = "Load balancer health checks from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 8501
  to_port           = 8501
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.this.id
  description       = "Package downloads, AWS APIs, clients"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "api" {
  name_prefix        = "skapi-"
  internal           = true
  load_balancer_type = "network"
  subnets            = var.subnet_ids
  # TLS passes straight through to the agents, which terminate it with the cluster CA's certs.
  enable_cross_zone_load_balancing = true
  tags                             = merge(var.tags, { Name = "${var.name}-api" })
}

resource "aws_lb_target_group" "api" {
  for_each    = { nomad = 4646, consul = 8501 }
  name_prefix = substr("sk${each.key}", 0, 6)
  port        = each.value
  protocol    = "TCP"
  vpc_id      = var.vpc_id
  target_type = "instance"

  health_check {
    protocol = "TCP"
    port     = "traffic-port"
  }

  tags = var.tags
}

resource "aws_lb_listener" "api" {
  for_each          = aws_lb_target_group.api
  load_balancer_arn = aws_lb.api.arn
  port              = each.value.port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = each.value.arn
  }
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-server-"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.this.id]
  update_default_version = true

  iam_instance_profile {
    name = var.instance_profile_name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/sda1"
    ebs {
      volume_size           = var.root_volume_size_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/server.sh.tftpl", {
    name           = var.name
    region         = data.aws_region.current.name
    datacenter     = var.datacenter
    server_count   = var.server_count
    retry_join     = local.retry_join
    ssm_prefix     = var.ssm_parameter_prefix
    kms_key_arn    = var.kms_key_arn
    nomad_version  = var.nomad_version
    consul_version = var.consul_version
    api_dns_name   = aws_lb.api.dns_name
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-server", (local.join_tag_key) = local.join_tag_value })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.name}-server" })
  }

  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  name_prefix               = "${var.name}-servers-"
  min_size                  = var.server_count
  max_size                  = var.server_count
  desired_capacity          = var.server_count
  vpc_zone_identifier       = var.subnet_ids
  target_group_arns         = [for tg in aws_lb_target_group.api : tg.arn]
  health_check_type         = "EC2"
  health_check_grace_period = 300

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # One server at a time, so the Raft quorum survives an upgrade (see docs/cluster.md).
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 66
      instance_warmup        = 300
    }
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = "${var.name}-server" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
