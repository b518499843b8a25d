output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key used for every encrypted resource."
  value       = aws_kms_key.this.arn
}

output "bucket_names" {
  description = "Data bucket names keyed by role."
  value       = { for k, b in aws_s3_bucket.this : k => b.bucket }
}

output "bucket_arns" {
  description = "Data bucket ARNs keyed by role."
  value       = { for k, b in aws_s3_bucket.this : k => b.arn }
}

output "access_log_bucket_name" {
  description = "Name of the S3 access-log bucket."
  value       = aws_s3_bucket.access_logs.bucket
}

output "kms_key_policy" {
  description = "The KMS key policy document as JSON (for audits and terraform test)."
  value       = aws_kms_key.this.policy
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid."
  value       = local.wildcard_reasons
}

output "public_access_blocks" {
  description = "Public access block settings of every bucket (data buckets and the access-log bucket)."
  value = [
    for b in concat(values(aws_s3_bucket_public_access_block.this), [aws_s3_bucket_public_access_block.access_logs]) : {
      bucket                  = b.bucket
      block_public_acls       = b.block_public_acls
      block_public_policy     = b.block_public_policy
      ignore_public_acls      = b.ignore_public_acls
      restrict_public_buckets = b.restrict_public_buckets
    }
  ]
}

output "encryption_algorithms" {
  description = "Default server-side encryption algorithm per data bucket."
  value       = { for k, c in aws_s3_bucket_server_side_encryption_configuration.this : k => one(c.rule).apply_server_side_encryption_by_default[0].sse_algorithm }
}

output "kms_rotation_enabled" {
  description = "Whether automatic rotation of the KMS key is on."
  value       = aws_kms_key.this.enable_key_rotation
}
