output "environment_arn" {
  description = "ARN of the MWAA environment."
  value       = aws_mwaa_environment.this.arn
}

output "webserver_url" {
  description = "Private URL of the Airflow UI."
  value       = aws_mwaa_environment.this.webserver_url
}

output "execution_role_arn" {
  description = "Execution role of the environment."
  value       = aws_iam_role.this.arn
}

output "policy_json" {
  description = "The execution role's inline policy as JSON (for audits and terraform test)."
  value       = aws_iam_role_policy.this.policy
}

output "wildcard_reasons" {
  description = "Why each policy statement of this module with a bare \"*\" action or resource needs it, keyed by Sid."
  value       = local.wildcard_reasons
}

output "airflow_configuration_options" {
  description = "The environment's Airflow configuration options (MWAA gives each to its components as AIRFLOW__<SECTION>__<KEY>; sensitive in the provider's schema)."
  value       = aws_mwaa_environment.this.airflow_configuration_options
  sensitive   = true
}
