locals {
  # A plan-time switch, not `var.certificate_arn != null`: an ACM certificate created in the same
  # configuration has an ARN known only after apply, and the HTTPS rules and listener are counted.
  https  = var.enable_https
  scheme = local.https ? "https" : "http"
  kind   = var.internal ? "int" : "pub"
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-gw-${local.kind}-"
  description = "Skiff gateway load balancer (${var.internal ? "internal" : "internet-facing"})"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-gateway-${local.kind}" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.this.id
  description       = "Gateway API over HTTP (redirected to HTTPS when a certificate is set)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each          = local.https ? toset(var.allowed_cidrs) : toset([])
  security_group_id = aws_security_group.this.id
  description       = "Gateway API over HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "to_gateway" {
  security_group_id = aws_security_group.this.id
  description       = "To gateway tasks on the system nodes"
  ip_protocol       = "tcp"
  from_port         = var.gateway_port
  to_port           = var.gateway_port
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_lb" "this" {
  name_prefix                = "sk${local.kind}-"
  internal                   = var.internal
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.this.id]
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  tags                       = merge(var.tags, { Name = "${var.name}-gateway-${local.kind}" })

  lifecycle {
    precondition {
      condition     = !var.enable_https || var.certificate_arn != null
      error_message = "enable_https = true needs a certificate_arn."
    }
    precondition {
      condition     = var.enable_https || var.certificate_arn == null
      error_message = "certificate_arn is set but enable_https is false: the certificate would be ignored and the gateway served over plain HTTP."
    }
  }
}

resource "aws_lb_target_group" "this" {
  name_prefix          = "sk${local.kind}-"
  port                 = var.gateway_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30

  # The same route Consul checks in nomad/gateway.nomad.hcl.
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.this.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}
