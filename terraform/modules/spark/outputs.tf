output "application_id" {
  description = "ID of the EMR Serverless application (StartJobRun target)."
  value       = aws_emrserverless_application.this.id
}

output "application_arn" {
  description = "ARN of the EMR Serverless application."
  value       = aws_emrserverless_application.this.arn
}

output "job_role_arn" {
  description = "Execution role passed to StartJobRun."
  value       = aws_iam_role.job.arn
}

output "log_group_name" {
  description = "CloudWatch log group for job runs."
  value       = aws_cloudwatch_log_group.this.name
}

output "policy_json" {
  description = "The job role's inline policy as JSON (for audits and terraform test)."
  value       = aws_iam_role_policy.job.policy
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid (none here)."
  value       = {}
}
