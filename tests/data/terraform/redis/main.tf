# The client security group is created here, so its id is known only after apply: with
# for_each over the ids (before the module took a map keyed by static labels) this plan failed.
resource "aws_security_group" "client" {
  name_prefix = "ci-redis-client-"
  description = "ci-redis fixture: a client of the job store"
  vpc_id      = data.aws_vpc.default.id
}

resource "aws_kms_key" "redis" {
  description         = "ci-redis fixture"
  enable_key_rotation = true
}

module "redis" {
  source = "../../modules/redis"

  name                   = "ci-redis"
  vpc_id                 = data.aws_vpc.default.id
  subnet_ids             = slice(sort(data.aws_subnets.default.ids), 0, 2)
  client_security_groups = { client = aws_security_group.client.id }
  kms_key_arn            = aws_kms_key.redis.arn
}
