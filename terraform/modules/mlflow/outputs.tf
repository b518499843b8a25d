output "tracking_uri" {
  description = "Private URL of the tracking server (basic auth)."
  value       = "http://mlflow.${local.namespace}:${local.port}"
}

output "admin_secret_arn" {
  description = "ARN of the secret holding the MLflow admin password (the ARN, never the value)."
  value       = aws_secretsmanager_secret.admin.arn
}

output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "task_role_arn" {
  description = "IAM role of the tracking server task."
  value       = aws_iam_role.task.arn
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid (none here)."
  value       = {}
}

output "client_secret_arns" {
  description = "Secret ARN of each client's MLflow basic-auth credentials (client => ARN, never the value)."
  value       = { for k, s in aws_secretsmanager_secret.client : k => s.arn }
}

output "injected_env_refs" {
  description = "Environment variable => Secrets Manager reference injected into the tracking server (references, never values)."
  value       = { for e in local.container_secrets : e.name => e.valueFrom }
}
