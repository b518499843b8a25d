output "address" {
  description = "Host name of the instance (private)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the instance."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Application database."
  value       = aws_db_instance.this.db_name
}

output "arn" {
  description = "ARN of the instance."
  value       = aws_db_instance.this.arn
}

output "master_user_secret_arn" {
  description = "ARN of the Secrets Manager secret RDS keeps the master password in (the ARN, never the value)."
  value       = try(aws_db_instance.this.master_user_secret[0].secret_arn, null)
}

output "wildcard_reasons" {
  description = "Why each AWS-managed policy attached here (keyed managed/<name>) may use \"*\" resources."
  value = var.monitoring_interval > 0 ? {
    "managed/AmazonRDSEnhancedMonitoringRole" = "AWS's policy for Enhanced Monitoring; it writes only to the RDSOSMetrics log group and lists log groups, which has no resource-level permission."
  } : {}
}

output "managed_policy_arns" {
  description = "AWS-managed policies attached to roles of this module."
  value       = aws_iam_role_policy_attachment.monitoring[*].policy_arn
}

output "publicly_accessible" {
  description = "Whether the instance has a public address (always false)."
  value       = aws_db_instance.this.publicly_accessible
}

output "storage_encrypted" {
  description = "Whether storage is encrypted with the KMS key."
  value       = aws_db_instance.this.storage_encrypted
}

output "manage_master_user_password" {
  description = "Whether RDS generates the master password and keeps it in Secrets Manager."
  value       = aws_db_instance.this.manage_master_user_password
}

output "password_in_config" {
  description = "Whether a master password was written in Terraform configuration (must be false)."
  value       = nonsensitive(aws_db_instance.this.password != null)
}

output "role_secret_arns" {
  description = "Secret ARN of each component's database role (component => ARN, never the value)."
  value       = { for k, s in aws_secretsmanager_secret.role : k => s.arn }
}

output "roles" {
  description = "Component => {username, secret_arn} of the least-privilege roles (input of terraform/scripts/bootstrap_db_roles.py)."
  value       = { for k, u in var.roles : k => { username = u, secret_arn = aws_secretsmanager_secret.role[k].arn } }
}
