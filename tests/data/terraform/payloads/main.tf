# A caller-managed KMS key created in the same configuration, the module's other path (the example
# root lets the module create its own). Its ARN is known only after apply: before the module took
# create_kms_key, counting its own key on `kms_key_arn == null` failed to plan.
resource "aws_kms_key" "payloads" {
  description         = "ci-payloads fixture"
  enable_key_rotation = true
}

module "payloads" {
  source = "../../modules/payloads"

  name            = "ci-payloads"
  expiration_days = 1
  create_kms_key  = false
  kms_key_arn     = aws_kms_key.payloads.arn
}
