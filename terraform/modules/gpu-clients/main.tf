data "aws_region" "current" {}

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
  ami_id       = var.ami_id != null ? var.ami_id : data.aws_ami.ubuntu[0].id
  pool_name    = "${var.name}-${var.node_pool}"
  spot_percent = var.use_spot ? 0 : 100
  # Client -> server ports: Nomad RPC and HTTP, Consul RPC, Serf LAN (TCP and UDP), Consul HTTPS.
  # https://developer.hashicorp.com/nomad/docs/install/production/requirements#ports-used
  # https://developer.hashicorp.com/consul/docs/install/ports
  to_server = {
    nomad_http_tcp  = { port = 4646, protocol = "tcp" }
    nomad_rpc_tcp   = { port = 4647, protocol = "tcp" }
    consul_rpc_tcp  = { port = 8300, protocol = "tcp" }
    serf_lan_tcp    = { port = 8301, protocol = "tcp" }
    serf_lan_udp    = { port = 8301, protocol = "udp" }
    consul_http_tcp = { port = 8501, protocol = "tcp" }
  }
}

resource "aws_security_group" "this" {
  name_prefix = "${local.pool_name}-"
  description = "Skiff Nomad clients (${var.node_pool} pool)"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = local.pool_name })

  lifecycle {
    create_before_destroy = true
  }
}

# Within the pool: Consul Serf gossip and task-to-task traffic on Nomad's dynamic ports.
resource "aws_vpc_security_group_ingress_rule" "self" {
  security_group_id            = aws_security_group.this.id
  description                  = "Clients of the same pool"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.this.id
}

# Consul servers gossip with every agent on Serf LAN.
resource "aws_vpc_security_group_ingress_rule" "serf_from_servers" {
  for_each                     = toset(["tcp", "udp"])
  security_group_id            = aws_security_group.this.id
  description                  = "Consul Serf LAN from servers"
  ip_protocol                  = each.value
  from_port                    = 8301
  to_port                      = 8301
  referenced_security_group_id = var.server_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "to_server" {
  for_each                     = local.to_server
  security_group_id            = var.server_security_group_id
  description                  = "${each.key} from ${var.node_pool} clients"
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_vpc_security_group_ingress_rule" "extra" {
  for_each                     = var.ingress_from_security_groups
  security_group_id            = aws_security_group.this.id
  description                  = each.key
  ip_protocol                  = "tcp"
  from_port                    = each.value.from_port
  to_port                      = each.value.to_port
  referenced_security_group_id = each.value.security_group_id
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.this.id
  description       = "Image pulls, model downloads, AWS APIs"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_launch_template" "this" {
  name_prefix            = "${local.pool_name}-"
  image_id               = local.ami_id
  instance_type          = var.instance_types[0]
  vpc_security_group_ids = [aws_security_group.this.id]
  update_default_version = true
  ebs_optimized          = true

  iam_instance_profile {
    name = var.instance_profile_name
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
    # 2 hops: containers on Docker's bridge reach IMDSv2 to assume their pool's task role.
    http_put_response_hop_limit = 2
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

  dynamic "block_device_mappings" {
    for_each = var.model_cache_volume_size_gb > 0 ? [var.model_cache_volume_size_gb] : []
    content {
      device_name = "/dev/sdf"
      ebs {
        volume_size           = block_device_mappings.value
        volume_type           = "gp3"
        throughput            = 500
        iops                  = 6000
        encrypted             = true
        kms_key_id            = var.kms_key_arn
        delete_on_termination = true
      }
    }
  }

  user_data = base64encode(templatefile("${path.module}/templates/client.sh.tftpl", {
    region                      = data.aws_region.current.name
    datacenter                  = var.datacenter
    node_pool                   = var.node_pool
    retry_join                  = var.retry_join
    ssm_prefix                  = var.ssm_parameter_prefix
    nomad_version               = var.nomad_version
    consul_version              = var.consul_version
    enable_gpu                  = var.enable_gpu
    nvidia_driver_branch        = var.nvidia_driver_branch
    nomad_device_nvidia_version = var.nomad_device_nvidia_version
    model_cache_volume          = var.model_cache_volume_size_gb > 0
    max_kill_timeout            = var.max_kill_timeout
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = local.pool_name, "skiff-node-pool" = var.node_pool })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = local.pool_name })
  }

  tags = var.tags
}

# Argument names: the AWS provider 5.x documentation of aws_autoscaling_group
# (mixed_instances_policy -> instances_distribution + launch_template -> override).
resource "aws_autoscaling_group" "this" {
  name_prefix               = "${local.pool_name}-"
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  target_group_arns         = var.target_group_arns
  health_check_type         = length(var.target_group_arns) > 0 ? "ELB" : "EC2"
  health_check_grace_period = 900 # driver install + first image pull on a GPU node
  capacity_rebalance        = var.use_spot

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = local.spot_percent
      on_demand_allocation_strategy            = "prioritized"
      spot_allocation_strategy                 = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }

      dynamic "override" {
        for_each = var.instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
      instance_warmup        = 600
    }
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = local.pool_name })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # Node counts belong to whoever scales the pool after creation (operator or autoscaler).
    ignore_changes = [desired_capacity]
  }
}
