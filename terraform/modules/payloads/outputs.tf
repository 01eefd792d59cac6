output "bucket_name" {
  description = "Payload bucket name (SKIFF_S3_BUCKET)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "Payload bucket ARN."
  value       = aws_s3_bucket.this.arn
}

output "prefix" {
  description = "Key prefix payloads live under (SKIFF_S3_PREFIX)."
  value       = var.prefix
}

output "kms_key_arn" {
  description = "KMS key that encrypts the bucket."
  value       = local.kms_key_arn
}

output "read_write_policy_arn" {
  description = "Managed policy granting object read/write/delete under the prefix and use of the bucket key."
  value       = aws_iam_policy.read_write.arn
}
