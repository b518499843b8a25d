output "api_id" {
  description = "ID of the HTTP API."
  value       = aws_apigatewayv2_api.this.id
}

output "api_endpoint" {
  description = "Invoke URL of the $default stage."
  value       = aws_apigatewayv2_api.this.api_endpoint
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "Execution role of the function."
  value       = aws_iam_role.this.arn
}

output "policy_json" {
  description = "The function role's inline policy as JSON (for audits and terraform test)."
  value       = aws_iam_role_policy.this.policy
}

output "wildcard_reasons" {
  description = "Why each AWS-managed policy attached here (keyed managed/<name>) may use \"*\" resources; the inline policy has no wildcard."
  value       = local.managed_policy_reasons
}

output "managed_policy_arns" {
  description = "AWS-managed policies attached to the function role."
  value       = concat([aws_iam_role_policy_attachment.xray.policy_arn], aws_iam_role_policy_attachment.vpc[*].policy_arn)
}

output "stage_name" {
  description = "Name of the stage ($default)."
  value       = aws_apigatewayv2_stage.this.name
}

output "integration_type" {
  description = "Integration type of the $default route (AWS_PROXY to the Lambda)."
  value       = aws_apigatewayv2_integration.this.integration_type
}

output "payload_format_version" {
  description = "Payload format of the Lambda integration."
  value       = aws_apigatewayv2_integration.this.payload_format_version
}

output "throttling_rate_limit" {
  description = "Steady-state rate limit of the stage."
  value       = aws_apigatewayv2_stage.this.default_route_settings[0].throttling_rate_limit
}

output "access_log_destination" {
  description = "Log group ARN receiving the stage's access logs."
  value       = aws_apigatewayv2_stage.this.access_log_settings[0].destination_arn
}

output "api_key_pepper_secret_arn" {
  description = "ARN of the API key pepper secret (never its value); null unless create_pepper_secret."
  value       = try(aws_secretsmanager_secret.api_key_pepper[0].arn, null)
}

output "environment" {
  description = "The function's environment variables (the app's SFMLOPS_* settings; secret ARNs, never secrets)."
  value       = local.environment
}
