# The certificate is imported in this configuration, so its ARN is known only after apply: before
# the module had enable_https, deciding on the HTTPS listener from certificate_arn failed to plan.
# The test generates a throwaway self-signed certificate and passes it in these variables.
variable "certificate_pem" {
  description = "Self-signed test certificate (PEM)."
  type        = string
}

variable "private_key_pem" {
  description = "Its private key (PEM)."
  type        = string
  sensitive   = true
}

resource "aws_acm_certificate" "gateway" {
  certificate_body = var.certificate_pem
  private_key      = var.private_key_pem
}

module "public" {
  source = "../../modules/gateway-lb"

  name            = "ci-gw"
  internal        = false
  vpc_id          = data.aws_vpc.default.id
  subnet_ids      = slice(sort(data.aws_subnets.default.ids), 0, 2)
  allowed_cidrs   = ["0.0.0.0/0"]
  enable_https    = true
  certificate_arn = aws_acm_certificate.gateway.arn
}

module "internal" {
  source = "../../modules/gateway-lb"

  name          = "ci-gw"
  internal      = true
  vpc_id        = data.aws_vpc.default.id
  subnet_ids    = slice(sort(data.aws_subnets.default.ids), 0, 2)
  allowed_cidrs = [data.aws_vpc.default.cidr_block]
}
